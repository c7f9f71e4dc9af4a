#!/usr/bin/env bash
# Runs Swift's own functional tests (the `swift` suite of
# ../shared/conformance) against a fresh `apus serve` and prints their
# count, `conformance: N passed, N failed, N skipped`.
#
#   APUS_SHARED             the directory holding conformance/ (default: ../shared,
#                           beside this repository)
#   FUNCTEST_SUITE_TIMEOUT  seconds for the whole suite (default 900)
#   FUNCTEST_TEST_TIMEOUT   seconds per test (default 60)
#   CONFORMANCE_OUT         where the results go (default: a temp dir, printed)
#   CONFORMANCE_SUITE       which suite of run-functests.sh (default swift;
#                           s3api and s3api-compat are the S3 ones)
#   APUS_DEFAULT_POLICY     the storage policy new containers get (default:
#                           apus's, Policy-0); `ec42` runs the suite on
#                           erasure coding
#
# Exit status: 0 when the suite ran (whatever it found), 1 when apus could
# not start or died during the run, 2 when the suite could not be set up.
set -euo pipefail
cd "$(dirname "$0")/.."

shared="${APUS_SHARED:-../shared}"
if [ ! -x "$shared/conformance/run-functests.sh" ]; then
  echo "conformance: not run ($shared/conformance/run-functests.sh not found; set APUS_SHARED)"
  exit 2
fi
conformance="$(cd "$shared/conformance" && pwd)"
suite="${CONFORMANCE_SUITE:-swift}"
export FUNCTEST_SUITE_TIMEOUT="${FUNCTEST_SUITE_TIMEOUT:-900}"
export FUNCTEST_TEST_TIMEOUT="${FUNCTEST_TEST_TIMEOUT:-60}"

echo "== cargo build --release -p apus"
cargo build --release --locked -p apus
target="${CARGO_TARGET_DIR:-target}"
apus="$(cd "$target/release" && pwd)/apus"

echo "== conformance suite: install"
if ! SKIP_APT=1 "$conformance/install.sh"; then
  echo "conformance: not run (install.sh failed)"
  exit 2
fi

work="$(mktemp -d)"
out="${CONFORMANCE_OUT:-$work/results}"
pid=""

# Stops apus if it still runs; reports how it ended.
stop_apus() {
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "apus serve did not stop within 30 s of SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  local code=0
  wait "$pid" 2>/dev/null || code=$?
  pid=""
  [ "$code" = 0 ] || echo "apus serve exited with status $code on SIGTERM"
}
cleanup() {
  stop_apus
  # The data can be large; the results are kept.
  rm -rf "$work/data"
}
trap cleanup EXIT

# Prints that apus died and the end of its log; returns 1 if it did.
check_alive() {
  if ! kill -0 "$pid" 2>/dev/null; then
    local code=0
    wait "$pid" 2>/dev/null || code=$?
    pid=""
    echo "apus serve DIED $1 (exit status $code); the end of its log:"
    tail -n 40 "$work/apus.log"
    return 1
  fi
}

# The proxy binds a port the kernel picks (nothing can take it between
# choosing and binding); the banner, printed once every server is bound,
# says which.
echo "== apus serve (data in $work/data, log in $work/apus.log)"
# The files exist before apus starts: the loop below may read them before
# the background process has opened them.
: >"$work/apus.out"
: >"$work/apus.log"
serve_args=(--data "$work/data")
if [ -n "${APUS_DEFAULT_POLICY:-}" ]; then
  printf 'data = "%s"\ndefault_policy = "%s"\n' "$work/data" "$APUS_DEFAULT_POLICY" >"$work/apus.toml"
  serve_args=(--config "$work/apus.toml")
  echo "== default storage policy: $APUS_DEFAULT_POLICY"
fi
"$apus" serve "${serve_args[@]}" --bind 127.0.0.1:0 --images-bind 127.0.0.1:0 >"$work/apus.out" 2>"$work/apus.log" &
pid=$!
endpoint=""
for _ in $(seq 120); do
  check_alive "at start" || exit 1
  endpoint="$(sed -n 's|^ *proxy *\(http://[0-9.:]*\)$|\1|p' "$work/apus.out" | head -n 1 || true)"
  if [ -n "$endpoint" ] && python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$endpoint/healthcheck" 2>/dev/null; then
    break
  fi
  endpoint=""
  sleep 0.5
done
if [ -z "$endpoint" ]; then
  echo "apus serve did not answer /healthcheck within 60 s; the end of its log:"
  tail -n 40 "$work/apus.log"
  exit 1
fi
echo "== apus serve on $endpoint"

echo "== run-functests.sh -s $suite (suite timeout ${FUNCTEST_SUITE_TIMEOUT} s, test timeout ${FUNCTEST_TEST_TIMEOUT} s)"
rc=0
timeout --kill-after=30 "$((FUNCTEST_SUITE_TIMEOUT + 600))" \
  "$conformance/run-functests.sh" -e "$endpoint" -s "$suite" -o "$out" \
  2>&1 | tee "$work/functests.log" || rc=$?
alive=0
check_alive "during the conformance run" || alive=1
echo "conformance results: $out"
if ! grep -q '^conformance:' "$work/functests.log"; then
  echo "conformance: not run (run-functests.sh ended with status $rc before counting; see above)"
  exit "$alive"
fi

# A test can fail for want of time on a loaded machine (a 503 when a
# server answers past conn_timeout). Failures are run once more; a test
# that passes then is counted and named as flaky, so that a noisy machine
# does not fail the floor while a real regression, which fails twice,
# still does. More than 50 failures are not retried: something is broken.
failed_ids="$(awk -F'\t' -v s="$suite" '$1 == s && ($3 == "failed" || $3 == "error") { print $2 }' "$out/outcomes.tsv")"
failed_count="$(printf '%s' "$failed_ids" | grep -c . || true)"
if [ "$alive" = 0 ] && [ "$failed_count" -gt 0 ] && [ "$failed_count" -le 50 ]; then
  expr="$(printf '%s\n' "$failed_ids" | awk -F'::' '{ e = "(" $2; for (i = 3; i <= NF; i++) e = e " and " $i; print e ")" }' | paste -sd'|' - | sed 's/|/ or /g')"
  echo "== run-functests.sh: the $failed_count failed tests once more"
  timeout --kill-after=30 "$((FUNCTEST_SUITE_TIMEOUT + 600))" \
    "$conformance/run-functests.sh" -e "$endpoint" -s "$suite" -o "$out-retry" -- -k "$expr" \
    >"$work/functests-retry.log" 2>&1 || true
  check_alive "during the retry" || alive=1
fi
python3 - "$out/outcomes.tsv" "$out-retry/outcomes.tsv" "$suite" <<'PY'
import os, sys
suite = sys.argv[3]
def outcomes(path):
    result = {}
    if os.path.exists(path):
        for line in open(path):
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[0] == suite:
                result[parts[1]] = parts[2]
    return result
first, retry = outcomes(sys.argv[1]), outcomes(sys.argv[2])
flaky = sorted(t for t, o in first.items() if o in ("failed", "error") and retry.get(t) == "passed")
final = {t: ("passed" if t in flaky else o) for t, o in first.items()}
for t in flaky:
    print(f"conformance: flaky (failed, then passed on a second try): {t}")
count = lambda *kinds: sum(1 for o in final.values() if o in kinds)
print(f"conformance: {count('passed')} passed, {count('failed', 'error')} failed, {count('skipped')} skipped")
PY
exit "$alive"
