#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/fuzz_targets for SECONDS each
# (default 60), one after another, and fails naming each target that found
# a crash, a hang or a property violation.
#
#   scripts/fuzz.sh [SECONDS]
#
# Works with only the stable toolchain: cargo-fuzz needs nightly flags
# (sanitizers), which RUSTC_BOOTSTRAP=1 unlocks on stable. cargo-fuzz itself
# is installed (pinned) when missing.
#
# Each target's corpus grows in fuzz/corpus/<target>/ (not in git); the
# hand-written seeds in fuzz/seeds/<target>/ are read as a second corpus.
# Crashing inputs land in fuzz/artifacts/<target>/, each run's libFuzzer
# output in fuzz/logs/<target>.log, and a table of executions and coverage
# is printed at the end.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
# An input taking longer than this is reported as a hang.
INPUT_TIMEOUT=20

secs="${1:-60}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: $0 [SECONDS]  (a positive whole number of seconds per target)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi
echo "== $(cargo fuzz --version)"

export RUSTC_BOOTSTRAP=1

targets=()
for f in fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
done

# One build for all targets (release, debug assertions, AddressSanitizer).
echo "== building ${#targets[@]} targets"
cargo fuzz build

mkdir -p logs
failed=()
summary=()
for t in "${targets[@]}"; do
    echo "== $t: ${secs}s"
    corpora=("corpus/$t")
    mkdir -p "corpus/$t"
    if [ -d "seeds/$t" ]; then
        corpora+=("seeds/$t")
    fi
    log="logs/$t.log"
    status=ok
    if ! cargo fuzz run "$t" "${corpora[@]}" -- \
        -max_total_time="$secs" -timeout="$INPUT_TIMEOUT" -print_final_stats=1 \
        >"$log" 2>&1; then
        status=FAILED
        failed+=("$t")
        tail -n 40 "$log" >&2
        echo "!! $t: the fuzzer failed (crash, hang or violated property); see fuzz/$log and fuzz/artifacts/$t/" >&2
    fi
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    cov="$(sed -n 's/^#[0-9]*[[:space:]]*DONE[[:space:]]*cov: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)"
    summary+=("$(printf '%-18s %14s %8s  %s' "$t" "${execs:--}" "${cov:--}" "$status")")
done

echo
printf '%-18s %14s %8s  %s\n' target executions cov result
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing failed for: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#targets[@]} targets ran ${secs}s each without a failure"
