#!/usr/bin/env bash
# Object-size sweep: for each size from 1 KiB to 256 MiB, PUT then GET
# ops/s, MiB/s and p50/p90/p99 latency with `apus bench`, against a fresh
# `apus serve` (or the reference Swift), and the memory of the system
# under test after each phase. Writes sweep.csv under OUT (scripts/plot.py
# draws it) and prints a table.
#
# Each phase is a fixed number of requests, so that every size takes a
# bounded time and writes a bounded amount: MAX_OPS, or fewer when that
# many would move more than BUDGET_MIB (min(MAX_OPS, BUDGET_MIB / size),
# at least one request per request in flight). With the defaults a size of
# 64 KiB or less makes 10,000 requests, 256 KiB 4,096, 1 MiB 1,024 ... and
# 256 MiB 4 (16 with CONC_LARGE=16 would write 4 GiB, three times over).
# Sizes below LARGE_FROM have CONC_SMALL requests in flight, the others
# CONC_LARGE: many small requests keep the servers busy, while a few large
# ones already fill the disk and network paths without holding
# concurrency x size in buffers.
#
#   PUT   apus bench --mix put=100 --ops N: N new objects, each written
#         whole (deleted after the phase)
#   GET   apus bench --mix get=100 --ops N --prefill P: first P objects
#         are written (not timed), then N GETs of random ones of them, each
#         read whole; P = min(N, 4 x concurrency, BUDGET_MIB / size), at
#         least 1
#
#   TARGET=apus|swift   apus serve, fresh, or the reference Swift on :8080
#                       (see scripts/bench-target.sh)
#   SIZES="1KiB 4KiB 16KiB 64KiB 256KiB 1MiB 4MiB 16MiB 64MiB 256MiB"
#   MAX_OPS=10000 BUDGET_MIB=1024
#   CONC_SMALL=16 CONC_LARGE=4 LARGE_FROM=1MiB
#   OUT        output directory [default: target/bench-sweep-<target>-<UTC time>]
#   APUS_PORT=9080 APUS_DATA_ROOT SKIP_BUILD=1 FORCE=1   as in
#              scripts/bench-target.sh (FORCE: start even when the data
#              root looks short of 3.75 x BUDGET_MIB)
#
# Files in OUT: sweep.csv (one row per size and op), run.txt, summary.txt,
# bench.log (apus bench's progress and warnings), and the server logs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-target.sh
SIZES="${SIZES:-1KiB 4KiB 16KiB 64KiB 256KiB 1MiB 4MiB 16MiB 64MiB 256MiB}"
MAX_OPS="${MAX_OPS:-10000}"
BUDGET_MIB="${BUDGET_MIB:-1024}"
CONC_SMALL="${CONC_SMALL:-16}"
CONC_LARGE="${CONC_LARGE:-4}"
LARGE_FROM="${LARGE_FROM:-1MiB}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-$root/target/bench-sweep-$TARGET-$stamp}"

large_from="$(bytes_of "$LARGE_FROM")"
budget=$((BUDGET_MIB << 20))
for size in $SIZES; do bytes_of "$size" >/dev/null; done
# A phase writes at most BUDGET_MIB, three times over (replicas), and a PUT
# phase's objects are deleted before the next phase; a quarter more for
# everything else.
check_room $((BUDGET_MIB * 1024 * 3 * 5 / 4))

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
work="$(mktemp -d)"
cleanup() {
  target_stop
  rm -rf "$work"
}
trap cleanup EXIT
target_start "$OUT"
{
  echo "date $stamp"
  describe_run
  echo "sizes $SIZES"
  echo "max_ops $MAX_OPS budget_mib $BUDGET_MIB conc_small $CONC_SMALL conc_large $CONC_LARGE large_from $LARGE_FROM"
} >"$OUT/run.txt"

# One phase: `op` (put or get) of `n` requests of `size` with `conc` in
# flight; one CSV row and one table line.
phase() {
  local size="$1" bytes="$2" op="$3" conc="$4" n="$5" prefill="$6" status=0
  local args=(--mix "$op=100" --ops "$n")
  [ "$prefill" = 0 ] || args+=(--prefill "$prefill")
  echo "== $size $op" >>"$OUT/bench.log"
  "$apus" bench -A "$url/auth/v1.0" -U test:tester -K testing --size "$size" \
    --concurrency "$conc" "${args[@]}" --json >"$work/run.json" 2>>"$OUT/bench.log" || status=$?
  [ "$status" -le 1 ] || { echo "error: apus bench failed (exit $status): see $OUT/bench.log" >&2; return 1; }
  read -r count errors elapsed ops mib p50 p90 p99 max < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
o = s["ops"][sys.argv[2]]
l = o["latency_ms"]
print(o["count"], o["errors"], s["elapsed_secs"], o["ops_per_sec"], o["mib_per_sec"], l["p50"], l["p90"], l["p99"], l["max"])
' "$work/run.json" "$op")
  read -r _ rss_sum _ hwm_sum _ < <(memory_totals)
  echo "$TARGET,$bytes,$size,$op,$conc,$n,$prefill,$count,$errors,$elapsed,$ops,$mib,$p50,$p90,$p99,$max,$rss_sum,$hwm_sum" >>"$OUT/sweep.csv"
  printf "%-8s %-4s %4d %6d %10.1f %9.1f %9.2f %9.2f %9.1f %7d\n" "$size" "$op" "$conc" "$n" "$ops" "$mib" "$p50" "$p99" \
    "$(awk -v k="$rss_sum" 'BEGIN { print k / 1024 }')" "$errors"
}

sweep() {
  local size bytes conc by_budget n prefill
  printf "%-8s %-4s %4s %6s %10s %9s %9s %9s %9s %7s\n" size op conc reqs ops/s MiB/s "p50 ms" "p99 ms" "RSS MiB" errors
  for size in $SIZES; do
    bytes="$(bytes_of "$size")"
    conc=$CONC_SMALL
    [ "$bytes" -lt "$large_from" ] || conc=$CONC_LARGE
    by_budget=$((bytes > 0 ? budget / bytes : MAX_OPS))
    n=$((MAX_OPS < by_budget ? MAX_OPS : by_budget))
    [ "$n" -ge "$conc" ] || n=$conc
    prefill=$((4 * conc))
    [ "$prefill" -le "$n" ] || prefill=$n
    [ "$prefill" -le "$by_budget" ] || prefill=$by_budget
    [ "$prefill" -ge 1 ] || prefill=1
    phase "$size" "$bytes" put "$conc" "$n" 0
    phase "$size" "$bytes" get "$conc" "$n" "$prefill"
  done
}

echo "target,size_bytes,size,op,concurrency,requests,prefill,count,errors,elapsed_s,ops_per_s,mib_per_s,p50_ms,p90_ms,p99_ms,max_ms,rss_sum_kib,hwm_sum_kib" >"$OUT/sweep.csv"
echo "== $TARGET: object-size sweep -> $OUT"
sweep | tee "$OUT/summary.txt"
echo "peak RSS of the system under test: $(memory_totals | awk '{ printf "%.1f MiB (VmHWM, summed over %d processes)", $4 / 1024, $1 }')" | tee -a "$OUT/summary.txt"
echo "data: $OUT"
