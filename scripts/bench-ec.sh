#!/usr/bin/env bash
# Erasure-coding throughput: apus-ec versus pyeclib (liberasurecode and
# ISA-L), side by side on this machine, one core each. For 4+2, 8+3 and
# 10+4 at 1 MiB segments, times encode and decode with the first two data
# fragments missing, and prints GB/s of segment data and apus's ratio.
# "encode_into" is apus encoding into reused buffers, as a proxy streaming
# segment after segment can (pyeclib allocates new fragments every time,
# so its figure is plain encode). apus's plain encode is mostly page
# faults: glibc hands the freed fragments back to the kernel between rounds
# and the next round faults fresh pages in (MALLOC_TRIM_THRESHOLD_ and
# MALLOC_MMAP_THRESHOLD_ set high show the difference). The region kernels
# alone, per instruction set: cargo run --release -p apus-ec --example
# kernel_bench.
#
#   SECONDS_PER_RUN (2), SEGMENT_SIZE (1048576),
#   EC_TYPES ("liberasurecode_rs_vand isa_l_rs_vand isa_l_rs_cauchy"),
#   SCHEMES ("4+2 8+3 10+4"),
#   APUS_SWIFT_PYTHON (the reference venv's interpreter, as the tests use),
#   CARGO_TARGET_DIR (target).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${SECONDS_PER_RUN:-2}"
SEGMENT="${SEGMENT_SIZE:-1048576}"
PYTHON="${APUS_SWIFT_PYTHON:-$HOME/.cache/swift-ref/swift-venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
  echo "$PYTHON not found: run scripts/swift-ref.sh, or set APUS_SWIFT_PYTHON" >&2
  exit 1
fi
if [ -z "${BENCH_EC_PINNED:-}" ]; then
  cargo build --release --locked -q -p apus-ec --example ec_bench
  # One core for both sides, so the figures compare single-core speed.
  if command -v taskset >/dev/null; then
    BENCH_EC_PINNED=1 exec taskset -c 0 "$0" "$@"
  fi
fi
APUS="${CARGO_TARGET_DIR:-$PWD/target}/release/examples/ec_bench"
EC_TYPES="${EC_TYPES:-liberasurecode_rs_vand isa_l_rs_vand isa_l_rs_cauchy}"
SCHEMES="${SCHEMES:-4+2 8+3 10+4}"

pyeclib_bench() {
  "$PYTHON" - "$@" <<'PY'
import os, sys, time
from pyeclib.ec_iface import ECDriver
ec_type, k, m, seg, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
driver = ECDriver(k=k, m=m, ec_type=ec_type)
data = os.urandom(seg)
fragments = driver.encode(data)
survivors = fragments[2:]
assert driver.decode(survivors) == data

def rate(op):
    op()
    start, runs = time.perf_counter(), 0
    while time.perf_counter() - start < secs:
        op()
        runs += 1
    return seg * runs / (time.perf_counter() - start) / 1e9

print("encode %.3f" % rate(lambda: driver.encode(data)))
print("decode %.3f" % rate(lambda: driver.decode(survivors)))
PY
}

field() { awk -v k="$1" '$1 == k { print $2 }'; }

printf '%-24s %-5s %-12s %10s %10s %7s\n' ec_type k+m op "apus GB/s" "pyeclib" ratio
for ec_type in $EC_TYPES; do
  for km in $SCHEMES; do
    set -- ${km/+/ }
    apus_out="$("$APUS" "$ec_type" "$1" "$2" "$SEGMENT" "$SECS")"
    py_out="$(pyeclib_bench "$ec_type" "$1" "$2" "$SEGMENT" "$SECS")"
    for op in encode decode encode_into; do
      a="$(field "$op" <<<"$apus_out")"
      p="$(field "${op%_into}" <<<"$py_out")"
      ratio="$(awk -v a="$a" -v p="$p" 'BEGIN { if (p > 0) printf "%.2fx", a / p; else print "-" }')"
      printf '%-24s %-5s %-12s %10s %10s %7s\n' "$ec_type" "$1+$2" "$op" "$a" "$p" "$ratio"
    done
  done
done
