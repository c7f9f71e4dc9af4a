#!/usr/bin/env bash
# Load benchmark: apus serve against the reference Swift, side by side on
# this machine, with the same load tool (apus bench suite) and workload:
# 4 KiB PUT/GET/HEAD/DELETE ops/s with their p50 and p99 latencies, the
# time to list a 10,000-object container, 1 GiB PUT/GET MB/s. Prints both
# figures and the ratio, oriented so that above 1 is better for apus.
#
#   API=s3          the same through S3 (apus bench suite --s3: path-style requests
#                   signed with AWS Signature V4, UNSIGNED-PAYLOAD) against
#                   apus's S3 layer and Swift's s3api; no listing, no POLICY,
#                   and apus is stopped before Swift runs (scripts/bench-s3.sh)
#   SKIP_SWIFT=1    measure apus alone (the reference needs ../shared/conformance
#                   installed with its apt packages: memcached, rsync)
#   PEER=rgw        measure against Ceph's RADOS Gateway instead of Swift
#                   (../shared/peers/rgw: Swift API on :8480, one copy; its
#                   install.sh must have run); apus then defaults to REPLICAS=1
#   REPLICAS=3      replicas of apus's rings (1 compares like with like
#                   against the one-copy RGW)
#   OBJECTS=2000 CONCURRENCY=64 LISTING=10000 LARGE_MIB=1024   workload
#   POLICY=ec42     the storage policy of the benchmark's containers on both
#                   sides (both name their erasure-coded 4+2 policy ec42)
#   APUS_PORT=9080  where apus listens (Swift's start.sh takes 8080)
#   PEER_SETTLE=20  seconds a peer this script started gets to finish its
#                   daemons' first passes before it is measured
#   APUS_DATA_ROOT  where apus keeps its devices; default /dev/shm when it
#                   exists, because start.sh puts Swift's devices on tmpfs
#                   too (see ../shared/conformance/README.md), so neither side
#                   pays for disk flushes the other skips
#
# A reference Swift (or RGW) already answering is used as it is and left
# running; one this script starts, it stops. Both sides' resident memory is
# reported idle (after start-up) and at the end of the run: for apus the one
# process, for the peer the sum over its server processes.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
shared="$root/../shared/conformance"
target="${CARGO_TARGET_DIR:-$root/target}"
OBJECTS="${OBJECTS:-2000}"
CONCURRENCY="${CONCURRENCY:-64}"
LISTING="${LISTING:-10000}"
LARGE_MIB="${LARGE_MIB:-1024}"
APUS_PORT="${APUS_PORT:-9080}"
PEER="${PEER:-swift}"
case "$PEER" in
  swift)
    SWIFT_URL="http://127.0.0.1:8080"
    peer_dir="$shared"
    peer_procs='swift-(proxy|account|container|object)-server|memcached'
    REPLICAS="${REPLICAS:-3}" ;;
  rgw)
    SWIFT_URL="http://127.0.0.1:8480"
    peer_dir="$root/../shared/peers/rgw"
    peer_procs='ceph-mon|ceph-osd|radosgw'
    REPLICAS="${REPLICAS:-1}"
    [ "${API:-swift}" = s3 ] && { echo "error: PEER=rgw measures the Swift API only" >&2; exit 2; } ;;
  *) echo "error: PEER is swift or rgw" >&2; exit 2 ;;
esac

cargo build --release --locked -q -p apus
work="$(mktemp -d)"
data_root="${APUS_DATA_ROOT:-}"
if [ -z "$data_root" ] && [ -d /dev/shm ]; then data_root=/dev/shm; fi
apus_data="$(mktemp -d "${data_root:-$work}/apus-bench.XXXXXX")"
apus_pid=""
swift_started=0
cleanup() {
  [ -n "$apus_pid" ] && kill "$apus_pid" 2>/dev/null && wait "$apus_pid" 2>/dev/null || true
  if [ "$swift_started" = 1 ]; then
    if [ "$PEER" = rgw ]; then "$peer_dir/stop.sh" --wipe >/dev/null 2>&1 || true
    else "$peer_dir/stop.sh" >/dev/null 2>&1 || true; fi
  fi
  rm -rf "$work" "$apus_data"
}
trap cleanup EXIT

bench() {
  if [ "${API:-swift}" = s3 ]; then
    "$target/release/apus" bench suite --s3 -A "$1" -U test:tester -K testing \
      --objects "$OBJECTS" --concurrency "$CONCURRENCY" --large-mib "$LARGE_MIB"
  else
    "$target/release/apus" bench suite -A "$1/auth/v1.0" -U test:tester -K testing \
      --objects "$OBJECTS" --concurrency "$CONCURRENCY" --listing "$LISTING" --large-mib "$LARGE_MIB" \
      ${POLICY:+--policy "$POLICY"}
  fi
}
label=""
[ "${API:-swift}" = s3 ] && label=" (S3)"

# Up when its auth endpoint answers at all (RGW has no /healthcheck).
wait_up() {
  for _ in $(seq 1 120); do
    code="$(curl -s -o /dev/null -w '%{http_code}' "$1/auth/v1.0" 2>/dev/null || true)"
    [ -n "$code" ] && [ "$code" != 000 ] && return 0
    sleep 1
  done
  echo "error: $1 did not come up" >&2
  return 1
}

# Resident memory in MiB: of one process (a pid), or summed over the
# processes whose command line matches an extended regex.
rss_mib() {
  local pids
  if [[ "$1" =~ ^[0-9]+$ ]]; then pids="$1"; else pids="$(pgrep -f -- "$1" || true)"; fi
  for p in $pids; do cat "/proc/$p/status" 2>/dev/null; done |
    awk '/^VmRSS/ { kb += $2 } END { printf "%.1f", kb / 1024 }'
}

# Serving tokens: a fresh token opens its account. Right after start-up
# Swift's tempauth may fail to keep a token in memcached, and a benchmark
# logging in then fails on its first request with 401.
wait_authorized() {
  local head tok url
  for _ in $(seq 1 60); do
    head="$(curl -s -D - -o /dev/null -H 'X-Auth-User: test:tester' -H 'X-Auth-Key: testing' \
      "$1/auth/v1.0" 2>/dev/null | tr -d '\r' || true)"
    tok="$(awk -F': ' 'tolower($1) == "x-auth-token" { print $2 }' <<<"$head")"
    url="$(awk -F': ' 'tolower($1) == "x-storage-url" { print $2 }' <<<"$head")"
    if [ -n "$tok" ] && [ -n "$url" ] &&
      curl -sf -o /dev/null -I -H "X-Auth-Token: $tok" "$url" 2>/dev/null; then
      return 0
    fi
    sleep 1
  done
  echo "error: $1 never accepted a token it gave" >&2
  return 1
}

start_apus() {
  RUST_LOG=warn "$target/release/apus" serve --data "$apus_data" \
    --bind "127.0.0.1:$APUS_PORT" >"$work/apus.log" 2>&1 &
  apus_pid=$!
  wait_up "http://127.0.0.1:$APUS_PORT"
}

start_peer() {
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$SWIFT_URL/auth/v1.0" 2>/dev/null || true)" != 000 ]; then
    echo "($PEER already running on $SWIFT_URL: using it, leaving it up)"
  else
    # start.sh stops what it started when it fails, so only a cluster that
    # came up is ours to stop.
    "$peer_dir/start.sh" >"$work/peer-start.log" 2>&1 || { tail -n 20 "$work/peer-start.log" >&2; exit 1; }
    swift_started=1
  fi
  wait_up "$SWIFT_URL"
  wait_authorized "$SWIFT_URL"
  # A cluster just started runs its daemons' first passes: let them end
  # rather than measure beside them.
  [ "$swift_started" = 1 ] && sleep "${PEER_SETTLE:-20}"
  return 0
}

# Ceph binds fixed ports in the ephemeral range (its monitor's 40300),
# which the sockets apus's run leaves in TIME_WAIT may hold for a minute:
# RGW starts first.
if [ "$PEER" = rgw ] && [ "${SKIP_SWIFT:-0}" != 1 ]; then start_peer; fi

start_apus
if [ "$REPLICAS" != 3 ]; then
  # The first start wrote 3-replica rings; rebuild the replicated ones
  # with REPLICAS (not object-2, the erasure-coded policy's 6-fragment
  # ring) and start again on them.
  kill "$apus_pid" && wait "$apus_pid" 2>/dev/null || true
  for builder in "$apus_data"/{account,container,object,object-1}.builder; do
    [ -f "$builder" ] || continue
    "$target/release/apus" ring "$builder" set_replicas "$REPLICAS" >/dev/null
    "$target/release/apus" ring "$builder" pretend_min_part_hours_passed >/dev/null
    "$target/release/apus" ring "$builder" rebalance >/dev/null || true
  done
  start_apus
fi
sleep 2
echo "== apus$label ($REPLICAS replicas)"
echo "apus idle RSS $(rss_mib "$apus_pid") MiB (whole cluster)"
bench "http://127.0.0.1:$APUS_PORT" | tee "$work/apus.txt"
# The whole cluster is one process: its peak resident memory over the run.
awk '/VmHWM/ { printf "apus peak RSS %.1f MiB (whole cluster, whole run)\n", $2 / 1024 }' "/proc/$apus_pid/status"
if [ "${API:-swift}" = s3 ]; then
  # Done with apus: stop it so it takes nothing from Swift's run.
  kill "$apus_pid" 2>/dev/null && wait "$apus_pid" 2>/dev/null || true
  apus_pid=""
fi

if [ "${SKIP_SWIFT:-0}" = 1 ]; then exit 0; fi
[ "$PEER" = rgw ] || start_peer
sleep 2
if [ "${API:-swift}" = s3 ]; then echo "== swift s3api"; else echo "== $PEER"; fi
echo "$PEER idle RSS $(rss_mib "$peer_procs") MiB (its server processes)"
bench "$SWIFT_URL" | tee "$work/swift.txt"
echo "$PEER RSS at the end $(rss_mib "$peer_procs") MiB (its server processes)"

# Rates (ops/s, MB/s) compare as apus / swift; times (ms: the listing and
# the latencies) as swift / apus, since less is better.
echo "== ratio (apus / $PEER for rates, $PEER / apus for times: higher is better for apus)"
join <(sort "$work/apus.txt") <(sort "$work/swift.txt") | awk -v peer="$PEER" '
  $1 == "listing_10k_bytes" { next }
  $3 == "ms" { printf "%-18s apus %10.3f %s  %s %10.3f %s  ratio %.2fx\n", $1, $2, $3, peer, $4, $5, ($2 > 0 ? $4 / $2 : 0); next }
  { printf "%-18s apus %10.1f %s  %s %10.1f %s  ratio %.2fx\n", $1, $2, $3, peer, $4, $5, ($4 > 0 ? $2 / $4 : 0) }'
