# Sourced by scripts/bench-scale.sh and scripts/bench-sweep.sh: builds
# apus, starts the system under test and finds its processes.
#
#   TARGET=apus     a fresh `apus serve` on 127.0.0.1:APUS_PORT (9080), its
#                   data under APUS_DATA_ROOT (default /dev/shm, tmpfs, as
#                   start.sh's Swift devices), all deleted at the end
#   TARGET=swift    the reference Swift on 127.0.0.1:8080: one already
#                   answering is used as it is and left running; else
#                   ../shared/conformance/start.sh starts it and stop.sh
#                   stops it at the end (SWIFT_DATA, SWIFT_VENV as there)
#   SKIP_BUILD=1    use the release binary as it is
#   FORCE=1         start even when `check_room` finds the data root (on
#                   tmpfs: the available memory) short of the estimate
#
# After `target_start OUT`: $url (the endpoint), $token and $storage (a
# test:tester session), and `memory` lists "pid name rss_kib hwm_kib" for
# every process of the system under test. The caller's EXIT trap must call
# `target_stop`.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="$root/../shared/conformance"
apus="${CARGO_TARGET_DIR:-$root/target}/release/apus"
TARGET="${TARGET:-apus}"
APUS_PORT="${APUS_PORT:-9080}"
SWIFT_URL="http://127.0.0.1:8080"
SWIFT_DATA="${SWIFT_DATA:-/tmp/swift-ref/swift-data}"
SWIFT_VENV="${SWIFT_VENV:-$HOME/.cache/swift-ref/swift-venv}"
case "$TARGET" in apus | swift) ;; *) echo "TARGET must be apus or swift" >&2; exit 2 ;; esac

if [ "${SKIP_BUILD:-0}" != 1 ]; then (cd "$root" && cargo build --release --locked -q -p apus); fi

apus_data=""
apus_pid=""
swift_started=0
url=""
token=""
storage=""

target_stop() {
  [ -n "$apus_pid" ] && kill "$apus_pid" 2>/dev/null && wait "$apus_pid" 2>/dev/null || true
  if [ "$swift_started" = 1 ]; then "$shared/stop.sh" >/dev/null 2>&1 || true; fi
  [ -z "$apus_data" ] || rm -rf "$apus_data"
}

wait_up() {
  for _ in $(seq 1 120); do
    curl -fs "$1/healthcheck" >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "error: $1 did not come up" >&2
  return 1
}

# Starts (or finds) the system under test; its logs go to directory $1.
# apus logs every background daemon pass (apus_daemons::worker at info).
target_start() {
  local out="$1" key value
  if [ "$TARGET" = apus ]; then
    apus_data="$(mktemp -d "$(data_root)/apus-bench.XXXXXX")"
    RUST_LOG="${RUST_LOG:-warn},apus_daemons::worker=info" "$apus" serve --data "$apus_data" \
      --bind "127.0.0.1:$APUS_PORT" >"$out/serve.out" 2>"$out/serve.log" &
    apus_pid=$!
    url="http://127.0.0.1:$APUS_PORT"
  else
    if curl -fs "$SWIFT_URL/info" >/dev/null 2>&1; then
      echo "(reference Swift already running on $SWIFT_URL: using it, leaving it up)"
    else
      # start.sh stops what it started when it fails, so only a cluster
      # that came up is ours to stop.
      "$shared/start.sh" >"$out/swift-start.log" 2>&1 || { tail -n 20 "$out/swift-start.log" >&2; return 1; }
      swift_started=1
    fi
    url="$SWIFT_URL"
  fi
  wait_up "$url"
  while IFS=': ' read -r key value; do
    case "${key,,}" in
      x-auth-token) token="${value%$'\r'}" ;;
      x-storage-url) storage="${value%$'\r'}" ;;
    esac
  done < <(curl -fsS -D - -o /dev/null -H 'X-Auth-User: test:tester' -H 'X-Auth-Key: testing' "$url/auth/v1.0")
  [ -n "$token" ] && [ -n "$storage" ] || { echo "error: no token from $url/auth/v1.0" >&2; return 1; }
}

# The processes of the system under test, "pid name" each: apus serve, or
# everything start.sh recorded (servers, daemons, memcached, rsync; not its
# syslog sink, a test helper), with their children (a Swift server forks
# its worker).
processes() {
  local pid name child
  if [ "$TARGET" = apus ]; then
    echo "$apus_pid apus-serve"
    for child in $(pgrep -P "$apus_pid" 2>/dev/null); do echo "$child apus-serve-child"; done
    return 0
  fi
  if [ -s "$SWIFT_DATA/run/swift.pids" ]; then
    while read -r pid name _; do
      [ "$name" = logsink ] && continue
      kill -0 "$pid" 2>/dev/null || continue
      echo "$pid $name"
      for child in $(pgrep -P "$pid" 2>/dev/null); do echo "$child $name-child"; done
    done <"$SWIFT_DATA/run/swift.pids"
  else
    # Not started by start.sh: Swift's processes by their command lines.
    for pid in $(pgrep -f 'swift-[a-z-]*(server|replicator|auditor|updater|expirer|reconstructor)'); do
      echo "$pid $(tr '\0' ' ' <"/proc/$pid/cmdline" | grep -o 'swift-[a-z-]*' | head -n 1)"
    done
  fi
}

# VmRSS and VmHWM (KiB) of every process: "pid name rss hwm" lines.
memory() {
  local pid name
  processes | while read -r pid name; do
    awk -v pid="$pid" -v name="$name" '
      /^VmRSS:/ { rss = $2 } /^VmHWM:/ { hwm = $2 }
      END { if (rss != "") print pid, name, rss, hwm }' "/proc/$pid/status" 2>/dev/null || true
  done
}

# "processes rss_sum rss_max hwm_sum hwm_max servers_rss servers_hwm"
# (KiB) over every process; the last two over the servers alone (Swift's
# proxy, account, container and object servers and their workers, without
# the daemons and helpers; all of apus serve).
memory_totals() {
  memory | awk -v all="$([ "$TARGET" = apus ] && echo 1 || echo 0)" '
    { n++; r += $3; h += $4; if ($3 > rm) rm = $3; if ($4 > hm) hm = $4 }
    all || $2 ~ /(proxy|account|container|object)-server/ { sr += $3; sh += $4 }
    END { print n + 0, r + 0, rm + 0, h + 0, hm + 0, sr + 0, sh + 0 }'
}

# Bytes in a whole-number size: 4096, 4KiB, 4K (powers of 1024), 4KB (of
# 1000), as apus bench reads them.
bytes_of() {
  local n unit
  n="$(printf '%s' "$1" | sed 's/[A-Za-z]*$//')"
  unit="$(printf '%s' "$1" | sed 's/^[0-9]*//')"
  case "$n" in '' | *[!0-9]*) echo "bad size: $1" >&2; return 1 ;; esac
  case "${unit,,}" in
    "" | b) echo "$n" ;;
    k | ki | kib) echo $((n << 10)) ;;
    m | mi | mib) echo $((n << 20)) ;;
    g | gi | gib) echo $((n << 30)) ;;
    kb) echo $((n * 1000)) ;;
    mb) echo $((n * 1000000)) ;;
    gb) echo $((n * 1000000000)) ;;
    *) echo "bad size: $1" >&2; return 1 ;;
  esac
}

# Where the system under test keeps its objects.
data_root() {
  if [ "$TARGET" = apus ]; then
    if [ -n "${APUS_DATA_ROOT:-}" ]; then echo "$APUS_DATA_ROOT"; elif [ -d /dev/shm ]; then echo /dev/shm; else echo /tmp; fi
  elif [ -n "${SWIFT_DEVICES_ROOT:-}" ]; then
    echo "$SWIFT_DEVICES_ROOT"
  elif [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
    echo /dev/shm
  else
    echo "$SWIFT_DATA"
  fi
}

# Refuses to start when the data root has less than $1 KiB free, or, on
# tmpfs (which is memory), when the machine has less than that available,
# or fewer than $2 free inodes (a tmpfs has a fixed number, /dev/shm's
# about 3 million: half a million objects in three replicas use them up):
# a full file system or an out-of-memory kill would spoil the run and
# whatever else runs on the machine. FORCE=1 goes ahead anyway.
check_room() {
  local need="$1" inodes="${2:-0}" dir avail mem free_inodes
  dir="$(data_root)"
  mkdir -p "$dir" 2>/dev/null || true
  avail="$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')"
  if [ "$(stat -f -c %T "$dir" 2>/dev/null)" = tmpfs ]; then
    mem="$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)"
    avail=$((mem < avail ? mem : avail))
  fi
  if [ "$avail" -lt "$need" ] && [ "${FORCE:-0}" != 1 ]; then
    echo "error: about $((need / 1048576 + 1)) GiB needed in $dir, $((avail / 1048576)) GiB available$([ "$(stat -f -c %T "$dir" 2>/dev/null)" = tmpfs ] && echo ' (tmpfs: memory)'); set APUS_DATA_ROOT (apus) or SWIFT_DEVICES_ROOT (swift) to a roomier file system, or FORCE=1" >&2
    exit 2
  fi
  # `df -i` shows 0 inodes in all for a file system without a limit
  # (tmpfs mounted with nr_inodes=0).
  free_inodes="$(df -Pi "$dir" | awk 'NR == 2 { print ($2 == 0 ? -1 : $4) }')"
  if [ "$free_inodes" != -1 ] && [ "$free_inodes" -lt "$inodes" ] && [ "${FORCE:-0}" != 1 ]; then
    echo "error: about $inodes inodes needed in $dir, $free_inodes free; use a file system with more (as root: mount -t tmpfs -o size=20G,nr_inodes=0 tmpfs DIR) through APUS_DATA_ROOT or SWIFT_DEVICES_ROOT, or FORCE=1" >&2
    exit 2
  fi
}
# Settings every run records: machine, versions, load.
describe_run() {
  echo "target $TARGET"
  echo "endpoint $url"
  echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (modified)')"
  echo "client $("$apus" --version 2>/dev/null || echo "apus unknown") bench"
  echo "cpus $(nproc) $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "memory $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  if [ "$TARGET" = apus ]; then echo "apus_data $apus_data ($(stat -f -c %T "$apus_data"))"; fi
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
}
