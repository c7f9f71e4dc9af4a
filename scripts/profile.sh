#!/usr/bin/env bash
# Where apus spends its CPU under a load: runs a release `apus serve` on
# tmpfs, drives it with `apus bench`, samples every thread of the server
# with perf (cpu-clock, DWARF call graphs) for a few seconds in the middle
# of the run, and prints the share of samples spent under each group of
# frames (scripts/perf-breakdown.py) and the hottest functions.
#
#   MIX=put=100      the bench mix (put=100, get=100, delete=100 after a
#                    prefill, ...); SIZE=4KiB; CONCURRENCY=64
#   SECONDS_SAMPLED=3  how long perf samples (after 2 s of warm-up)
#   OUT=DIR          keep perf.data and the folded stacks there
#   APUS_PORT=9080
#
# Needs `perf` (Debian's linux-perf) with cpu-clock events; cycles are not
# needed, so it works in VMs that hide the PMU.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
target="${CARGO_TARGET_DIR:-$root/target}"
MIX="${MIX:-put=100}"
SIZE="${SIZE:-4KiB}"
CONCURRENCY="${CONCURRENCY:-64}"
SECONDS_SAMPLED="${SECONDS_SAMPLED:-3}"
APUS_PORT="${APUS_PORT:-9080}"
command -v perf >/dev/null || { echo "error: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }

cargo build --release --locked -q -p apus
work="$(mktemp -d)"
out="${OUT:-$work}"
mkdir -p "$out"
data="$(mktemp -d "${APUS_DATA_ROOT:-/dev/shm}/apus-profile.XXXXXX")"
apus_pid=""
cleanup() {
  [ -n "$apus_pid" ] && kill "$apus_pid" 2>/dev/null && wait "$apus_pid" 2>/dev/null || true
  rm -rf "$data"
  [ -z "${OUT:-}" ] && rm -rf "$work"
  return 0
}
trap cleanup EXIT

RUST_LOG=warn "$target/release/apus" serve --data "$data" --bind "127.0.0.1:$APUS_PORT" >"$work/apus.log" 2>&1 &
apus_pid=$!
for _ in $(seq 1 60); do
  curl -fs "http://127.0.0.1:$APUS_PORT/healthcheck" >/dev/null 2>&1 && break
  sleep 0.5
done
duration=$((SECONDS_SAMPLED + 4))
"$target/release/apus" bench -A "http://127.0.0.1:$APUS_PORT/auth/v1.0" \
  --mix "$MIX" --size "$SIZE" --concurrency "$CONCURRENCY" --duration "${duration}s" \
  >"$out/bench.txt" 2>"$work/bench.err" &
bench_pid=$!
sleep 2
perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$apus_pid" \
  -o "$out/perf.data" -- sleep "$SECONDS_SAMPLED" >/dev/null 2>&1
wait "$bench_pid" || { cat "$work/bench.err" >&2; exit 1; }
cat "$out/bench.txt"
perf script -i "$out/perf.data" 2>/dev/null >"$out/stacks.txt"
python3 "$root/scripts/perf-breakdown.py" <"$out/stacks.txt"
