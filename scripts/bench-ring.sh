#!/usr/bin/env bash
# Ring rebalance benchmark: apus versus swift-ring-builder, side by side on
# this machine. Builds part power 18, 3 replicas, 1,000 devices in
# 4 regions x 5 zones (5 hosts per zone, 10 disks per host, a quarter of
# them at double weight), rebalances from scratch, then adds 10 devices
# and rebalances again. Prints both times and the ratio.
#
#   PART_POWER (18), SKIP_SWIFT=1 to time apus alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PART_POWER="${PART_POWER:-18}"
[ "${SKIP_APUS:-0}" = 1 ] || cargo build --release --locked -q -p apus
APUS="$PWD/target/release/apus"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

devices=()
n=0
for region in 1 2 3 4; do
  for zone in 1 2 3 4 5; do
    for host in 1 2 3 4 5; do
      for disk in $(seq 1 10); do
        n=$((n + 1))
        weight=100
        [ $((n % 4)) -eq 0 ] && weight=200
        devices+=("r${region}z${zone}-10.${region}.${zone}.${host}:6200/d${disk}" "$weight")
      done
    done
  done
done
extra=()
for disk in $(seq 1 10); do
  extra+=("r1z1-10.1.1.9:6200/x${disk}" 100)
done

now() { date +%s.%N; }

# run_tool NAME BUILDER_CMD... : times create+add (untimed) then two rebalances
time_rebalances() {
  local name="$1"; shift
  local dir="$work/$name"
  mkdir -p "$dir"; cd "$dir"
  "$@" object.builder create "$PART_POWER" 3 1 >/dev/null
  "$@" object.builder add "${devices[@]}" >/dev/null
  local t0 t1 t2
  t0=$(now)
  "$@" object.builder rebalance 1 >"$dir/rebalance1.log" 2>&1 || [ $? -eq 1 ]
  t1=$(now)
  "$@" object.builder pretend_min_part_hours_passed >/dev/null 2>&1 || true
  "$@" object.builder add "${extra[@]}" >/dev/null
  local t2a
  t2a=$(now)
  "$@" object.builder rebalance 2 >"$dir/rebalance2.log" 2>&1 || [ $? -eq 1 ]
  t2=$(now)
  cd - >/dev/null
  awk -v a="$t0" -v b="$t1" -v c="$t2a" -v d="$t2" 'BEGIN { printf "%.6f %.6f\n", b - a, d - c }'
}

if [ "${SKIP_APUS:-0}" = 1 ]; then apus_first=1; apus_second=1; else
read -r apus_first apus_second < <(time_rebalances apus "$APUS" ring)
printf 'apus:               first rebalance %8.3f s, after adding 10 devices %8.3f s\n' "$apus_first" "$apus_second"
tail -n 3 "$work/apus/rebalance1.log" | sed 's/^/  /'
fi
if [ "${SKIP_SWIFT:-0}" = 1 ]; then
  exit 0
fi
SWIFT_PYTHON="$(scripts/swift-ref.sh)"
SRB="$(dirname "$SWIFT_PYTHON")/swift-ring-builder"
read -r swift_first swift_second < <(time_rebalances swift "$SRB")
printf 'swift-ring-builder: first rebalance %8.3f s, after adding 10 devices %8.3f s\n' "$swift_first" "$swift_second"
tail -n 3 "$work/swift/rebalance1.log" | sed 's/^/  /'
awk -v sf="$swift_first" -v af="$apus_first" -v ss="$swift_second" -v as="$apus_second" \
  'BEGIN { printf "ratio (swift / apus): first %.1fx, second %.1fx\n", sf / af, ss / as }'
