#!/usr/bin/env bash
# Scale benchmark: ONE container filled with 4 KiB objects from 0 to
# OBJECTS, step by step, against a fresh `apus serve` (or the reference
# Swift), measuring how the system holds up as the container grows:
#
#   after every step   the step's PUT ops/s, MiB/s, p50/p99 latency and
#                      errors (apus bench --json), the elapsed time, and the
#                      resident memory (VmRSS, and the peak VmHWM) of the
#                      system under test: summed over its processes, the
#                      largest one, and the servers alone (for Swift, the
#                      proxy, account, container and object servers and
#                      their workers, without daemons, memcached and rsync)
#   at each checkpoint (10^4, 10^5, 10^6 objects, those <= OBJECTS) the
#                      latency of LISTING_REQUESTS sequential requests
#                      (curl, one connection each; median and p90) of each
#                      kind: container HEAD; GET the first page
#                      (?format=json, the default limit of 10,000 names, as a
#                      client that gives no limit gets); GET a deep page
#                      (marker=d900/, 90% through the names, default limit);
#                      GET prefix=d500/&delimiter=/ (one directory's
#                      objects); GET delimiter=/ (the top-level directories)
#   after the fill     object-replicator passes over the unchanged objects
#                      (see below)
#   throughout         every RSS_INTERVAL seconds, VmRSS and VmHWM of every
#                      process, with what the script was doing
#
# Objects are named d<i>/obj-<n> over DIRS pseudo-directories, i = n mod
# DIRS (apus bench --dirs), so the listings above have structure. Each step
# is one `apus bench --mix put=100 --ops STEP --container C --first-object
# N --dirs DIRS --keep` run, so the client is the same for both targets.
#
# Replication pass, apus: `apus serve` runs the object replicator in
# process (a pass over every partition of its 4 replicated devices, that is
# 3 x OBJECTS object replicas, then a pause to 30 s from the pass's start).
# The script logs each pass (apus_daemons::worker at info: "object-
# replicator pass done in S s" with its counts) and, once the fill and the
# listings are done, waits for REPL_PASSES passes that STARTED after that
# point. The first may still rehash suffixes the last PUTs invalidated; the
# second has nothing at all to do but compare hashes with the other
# replicas. Both are recorded, with their counts, in replication.csv.
# Swift: after the fill, `swift-object-replicator <node conf> once` for
# each of the 4 nodes in turn (one device of the replicated ring each),
# timed by wall clock (which includes ~1 s of Python start-up). Swift's own
# replicators keep running (every SWIFT_DAEMON_INTERVAL s, 300 by default
# in start.sh).
#
#   TARGET=apus     apus serve (fresh, data under APUS_DATA_ROOT) or swift:
#                   the reference Swift on 127.0.0.1:8080 (started with
#                   ../shared/conformance/start.sh if not already up, and
#                   then stopped at the end; one already up is left up,
#                   with the filled container in it)
#   OBJECTS=1000000 STEP=50000   the fill and its steps; the checkpoints
#                   are steps too
#   CHECKPOINTS="10000 100000 1000000"   listing checkpoints (<= OBJECTS)
#   DIRS=1000       pseudo-directories of the object names
#   SIZE=4KiB CONCURRENCY=32   each PUT's size, requests in flight
#   LISTING_REQUESTS=20   requests timed per listing kind and checkpoint
#   REPL_PASSES=2   replication passes measured (apus); 0 skips them
#   REPL_TIMEOUT=7200   seconds to wait for them
#   SWIFT_REPL=1    0 skips the Swift replication passes
#   RSS_INTERVAL=5  seconds between samples of every process's memory
#   OUT             output directory [default:
#                   target/bench-scale-<target>-<UTC time>]
#   APUS_PORT=9080  where apus listens
#   APUS_DATA_ROOT  where apus keeps its devices; default /dev/shm (tmpfs,
#                   like start.sh's Swift devices, so memory): a 4 KiB
#                   object takes about 13 KiB there (3 replicas), 10^6 of
#                   them about 13 GiB. The script refuses to start when the
#                   data root, or on tmpfs the available memory, is short
#                   of its estimate; FORCE=1 starts anyway
#   SKIP_BUILD=1    use the release binary as it is
#
# Files in OUT: steps.csv (one row per step), listing.csv (one row per
# checkpoint and kind), replication.csv (one row per pass), rss.csv (every
# process, every sample), run.txt (settings, machine, versions),
# summary.txt (what was printed), and the logs. `scripts/plot.py OUT...`
# draws the charts.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-target.sh
OBJECTS="${OBJECTS:-1000000}"
STEP="${STEP:-50000}"
CHECKPOINTS="${CHECKPOINTS:-10000 100000 1000000}"
DIRS="${DIRS:-1000}"
SIZE="${SIZE:-4KiB}"
CONCURRENCY="${CONCURRENCY:-32}"
LISTING_REQUESTS="${LISTING_REQUESTS:-20}"
REPL_PASSES="${REPL_PASSES:-2}"
REPL_TIMEOUT="${REPL_TIMEOUT:-7200}"
SWIFT_REPL="${SWIFT_REPL:-1}"
RSS_INTERVAL="${RSS_INTERVAL:-5}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-$root/target/bench-scale-$TARGET-$stamp}"
for n in "$OBJECTS" "$STEP" "$DIRS" "$LISTING_REQUESTS" "$REPL_PASSES" "$REPL_TIMEOUT"; do
  case "$n" in '' | *[!0-9]*) echo "OBJECTS, STEP, DIRS, LISTING_REQUESTS, REPL_PASSES, REPL_TIMEOUT: whole numbers" >&2; exit 2 ;; esac
done
[ "$STEP" -gt 0 ] && [ "$DIRS" -gt 0 ] || { echo "STEP and DIRS must be at least 1" >&2; exit 2; }

size_bytes="$(bytes_of "$SIZE")"
# Three replicas of every object, each in whole 4 KiB pages, plus about
# 1 KiB of directories, metadata and container rows (a smoke run of
# 20,000 4 KiB objects took 255 MiB on tmpfs: 13 KiB an object).
# Inodes: per replica the object's hash directory and its .data file, and
# now and then a new suffix directory; 7 an object, to be safe.
check_room $((OBJECTS * 3 * ((size_bytes + 4095) / 4096 * 4 + 1))) $((OBJECTS * 7))

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
work="$(mktemp -d)"
sampler_pid=""
cleanup() {
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null && wait "$sampler_pid" 2>/dev/null || true
  target_stop
  rm -rf "$work"
}
trap cleanup EXIT
target_start "$OUT"

started_at="$(date +%s.%N)"
since() { awk -v s="$started_at" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - s }'; }

# What the script is doing, for the sampler: "phase objects".
phase() { echo "$1 $2" >"$work/phase.tmp" && mv "$work/phase.tmp" "$work/phase"; }
phase start 0
echo "t_s,phase,objects,pid,name,rss_kib,hwm_kib" >"$OUT/rss.csv"
(
  set +e
  while :; do
    read -r what objs <"$work/phase" || true
    t="$(since)"
    memory | awk -v t="$t" -v what="$what" -v objs="$objs" '{ print t "," what "," objs "," $1 "," $2 "," $3 "," $4 }' >>"$OUT/rss.csv"
    sleep "$RSS_INTERVAL"
  done
) &
sampler_pid=$!

container="scale-$stamp"

{
  echo "date $stamp"
  describe_run
  echo "container $container"
  echo "objects $OBJECTS step $STEP size $SIZE concurrency $CONCURRENCY dirs $DIRS"
  echo "checkpoints $CHECKPOINTS listing_requests $LISTING_REQUESTS"
} >"$OUT/run.txt"

# ---------------------------------------------------------------- helpers
# Pseudo-directory i's name, zero-padded as apus bench pads it.
last_dir=$((DIRS > 1 ? DIRS - 1 : 1))
dir_width=${#last_dir}
dir_name() { printf "d%0*d/" "$dir_width" "$1"; }
deep_marker="$(dir_name $((DIRS * 9 / 10)))"
mid_prefix="$(dir_name $((DIRS / 2)))"
urlencode_slash() { printf '%s' "$1" | sed 's|/|%2F|g'; }

# One field of bench's JSON summary, by a Python expression over `s`.
json_field() { python3 -c "import json, sys; s = json.load(open(sys.argv[1])); print($2)" "$1"; }

# Median, p90 (nearest rank), min and max of the numbers on stdin, in ms.
stats_ms() {
  sort -g | awk '{ v[NR] = $1 * 1000 } END {
    if (NR == 0) { print "0 0 0 0"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    r = int(0.9 * NR); if (r < 0.9 * NR) r++
    printf "%.3f %.3f %.3f %.3f\n", m, v[r], v[1], v[NR] }'
}

echo "target,objects,kind,method,query,requests,median_ms,p90_ms,min_ms,max_ms,status,bytes,entries" >"$OUT/listing.csv"
# Times LISTING_REQUESTS requests of one kind at `objects`; one CSV row.
time_listing() {
  local objects="$1" kind="$2" method="$3" query="$4" i line status bytes entries
  local curl_method=(-X GET)
  [ "$method" = HEAD ] && curl_method=(-I)
  : >"$work/times"
  status=""
  for i in $(seq 1 "$LISTING_REQUESTS"); do
    line="$(curl -s "${curl_method[@]}" -H "X-Auth-Token: $token" -D "$work/head" -o "$work/body" \
      -w '%{http_code} %{size_download} %{time_total}' "$storage/$container$query")"
    read -r status bytes t <<<"$line"
    echo "$t" >>"$work/times"
  done
  if [ "$method" = HEAD ]; then
    entries="$(tr -d '\r' <"$work/head" | awk -F': ' 'tolower($1) == "x-container-object-count" { print $2 }')"
  else
    entries="$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$work/body" 2>/dev/null || echo "")"
  fi
  read -r median p90 min max < <(stats_ms <"$work/times")
  echo "$TARGET,$objects,$kind,$method,\"$query\",$LISTING_REQUESTS,$median,$p90,$min,$max,$status,$bytes,$entries" >>"$OUT/listing.csv"
  printf "  %-13s median %9.2f ms  p90 %9.2f ms  (%s, %s bytes, %s entries)\n" \
    "$kind" "$median" "$p90" "$status" "$bytes" "$entries"
}

listings() {
  local objects="$1"
  phase listing "$objects"
  echo "listing latency at $objects objects ($LISTING_REQUESTS requests each):"
  time_listing "$objects" head HEAD ""
  time_listing "$objects" first_page GET "?format=json"
  time_listing "$objects" deep_marker GET "?format=json&marker=$(urlencode_slash "$deep_marker")"
  time_listing "$objects" prefix_delim GET "?format=json&prefix=$(urlencode_slash "$mid_prefix")&delimiter=%2F"
  time_listing "$objects" top_delim GET "?format=json&delimiter=%2F"
}

# ---------------------------------------------------------------- the fill
# The steps: every multiple of STEP, every checkpoint, and OBJECTS.
targets="$( {
  seq "$STEP" "$STEP" "$OBJECTS"
  for c in $CHECKPOINTS; do [ "$c" -le "$OBJECTS" ] && echo "$c"; done
  echo "$OBJECTS"
} | sort -n | uniq | awk '$1 > 0')"

echo "target,objects,step_objects,elapsed_s,step_s,put_ops_per_s,put_mib_per_s,p50_ms,p90_ms,p99_ms,max_ms,errors,procs,rss_sum_kib,rss_max_kib,hwm_sum_kib,hwm_max_kib,servers_rss_kib,servers_hwm_kib" >"$OUT/steps.csv"
echo "== $TARGET: filling $container to $OBJECTS objects of $SIZE ($CONCURRENCY concurrent, $DIRS directories) -> $OUT"
done_objects=0
for goal in $targets; do
  n=$((goal - done_objects))
  phase fill "$done_objects"
  step_started="$(date +%s.%N)"
  status=0
  echo "== objects $done_objects .. $((goal - 1))" >>"$OUT/bench.log"
  "$apus" bench -A "$url/auth/v1.0" -U test:tester -K testing --mix put=100 --size "$SIZE" \
    --concurrency "$CONCURRENCY" --ops "$n" --container "$container" --first-object "$done_objects" \
    --dirs "$DIRS" --keep --json >"$work/step.json" 2>>"$OUT/bench.log" || status=$?
  [ "$status" -le 1 ] || { echo "error: apus bench failed (exit $status): see $OUT/bench.log" >&2; exit 1; }
  step_s="$(awk -v s="$step_started" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - s }')"
  done_objects=$goal
  read -r ops mib p50 p90 p99 max errors < <(json_field "$work/step.json" \
    "' '.join(str(x) for x in (s['ops']['put']['ops_per_sec'], s['ops']['put']['mib_per_sec'], *(s['ops']['put']['latency_ms'][k] for k in ('p50', 'p90', 'p99', 'max')), s['errors']))")
  read -r procs rss_sum rss_max hwm_sum hwm_max servers_rss servers_hwm < <(memory_totals)
  echo "$TARGET,$goal,$n,$(since),$step_s,$ops,$mib,$p50,$p90,$p99,$max,$errors,$procs,$rss_sum,$rss_max,$hwm_sum,$hwm_max,$servers_rss,$servers_hwm" >>"$OUT/steps.csv"
  mem="$(awk -v n="$procs" -v r="$rss_sum" -v h="$hwm_sum" -v s="$servers_rss" 'BEGIN {
    printf "RSS %.1f MiB (peak %.1f", r / 1024, h / 1024
    if (n > 1) printf "; %d processes, servers %.1f", n, s / 1024
    printf ")" }')"
  printf "%9d objects  %8.1f PUT/s  p50 %7.2f ms  p99 %8.2f ms  errors %d  %s  %s s\n" \
    "$goal" "$ops" "$p50" "$p99" "$errors" "$mem" "$(since)"
  for c in $CHECKPOINTS; do
    if [ "$c" = "$goal" ]; then listings "$goal"; fi
  done
done
fill_done="$(date +%s.%N)"
if [ "$TARGET" = apus ]; then
  echo "apus data: $(du -sh "$apus_data" | cut -f1) for $OBJECTS objects" | tee -a "$OUT/run.txt"
fi

# ---------------------------------------------------------------- replication
echo "target,objects,pass,devices,elapsed_s,completed,partitions,suffixes_checked,hashmatch,suffixes_synced,failures,rss_kib,hwm_kib" >"$OUT/replication.csv"
if [ "$TARGET" = apus ] && [ "$REPL_PASSES" -gt 0 ]; then
  phase replication "$OBJECTS"
  echo "replication: waiting for $REPL_PASSES object-replicator passes that start from now (at most $REPL_TIMEOUT s)"
  t0="$(date +%s.%N)"
  got=0
  deadline=$(($(date +%s) + REPL_TIMEOUT))
  while [ "$got" -lt "$REPL_PASSES" ] && [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 2
    # Each pass's line: "<RFC 3339 time> INFO apus_daemons::worker:
    # object-replicator pass done in 12.345s key=value ...": the ones that
    # started (logged time - elapsed) after t0, in order.
    got="$(python3 - "$OUT/serve.log" "$t0" "$work/passes" <<'PY'
import datetime, re, sys
log, t0, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
line_re = re.compile(r'^(\S+)\s+INFO\s+apus_daemons::worker: object-replicator pass (done|cut short) in ([0-9.]+)s(.*)$')
passes = []
for line in open(log, errors='replace'):
    m = line_re.match(line.strip())
    if not m:
        continue
    at = datetime.datetime.fromisoformat(m.group(1).replace('Z', '+00:00')).timestamp()
    took = float(m.group(3))
    if at - took >= t0:
        counts = dict(kv.split('=', 1) for kv in m.group(4).split())
        passes.append((took, m.group(2) == 'done', counts))
with open(out, 'w') as f:
    for took, done, c in passes:
        f.write(' '.join(str(x) for x in (took, int(done), *(c.get(k, 0) for k in
                ('partitions', 'suffixes_checked', 'hashmatch', 'suffixes_synced', 'failures')))) + '\n')
print(len(passes))
PY
)"
  done
  if [ "$got" -lt "$REPL_PASSES" ]; then
    echo "warning: only $got replication passes within $REPL_TIMEOUT s" >&2
  fi
  read -r _ _ rss hwm < <(memory | head -n 1)
  i=0
  while read -r took completed parts checked match synced failures; do
    i=$((i + 1))
    [ "$i" -le "$REPL_PASSES" ] || break
    echo "$TARGET,$OBJECTS,$i,4,$took,$completed,$parts,$checked,$match,$synced,$failures,$rss,$hwm" >>"$OUT/replication.csv"
    printf "replication pass %d: %.2f s over %s partitions (%s suffixes checked, %s hash matches, %s suffixes synced, %s failures)\n" \
      "$i" "$took" "$parts" "$checked" "$match" "$synced" "$failures"
  done <"$work/passes"
elif [ "$TARGET" = swift ] && [ "$SWIFT_REPL" = 1 ]; then
  phase replication "$OBJECTS"
  if [ -x "$SWIFT_VENV/bin/python" ] && [ -d "$SWIFT_DATA/etc/object-server" ]; then
    for node in 1 2 3 4; do
      conf="$SWIFT_DATA/etc/object-server/$node.conf"
      [ -f "$conf" ] || continue
      t="$(date +%s.%N)"
      if SWIFT_DIR="$SWIFT_DATA/etc" "$SWIFT_VENV/bin/python" "$shared/lib/swiftrun.py" \
        swift-object-replicator "$conf" once >>"$OUT/swift-replicator.log" 2>&1; then
        completed=1
      else
        completed=0
      fi
      took="$(awk -v s="$t" -v n="$(date +%s.%N)" 'BEGIN { printf "%.3f", n - s }')"
      echo "$TARGET,$OBJECTS,$node,1,$took,$completed,,,,,,," >>"$OUT/replication.csv"
      printf "replication: swift-object-replicator once, node %d (one device): %.2f s%s\n" \
        "$node" "$took" "$([ "$completed" = 1 ] || echo ' (failed: see swift-replicator.log)')"
    done
  else
    echo "replication: skipped (no Swift venv or configs under $SWIFT_DATA)"
  fi
fi

phase end "$OBJECTS"
total_s="$(since)"
{
  echo "== $TARGET scale run: $OBJECTS objects of $SIZE in one container, $total_s s in all (fill $(awk -v s="$started_at" -v n="$fill_done" 'BEGIN { printf "%.0f", n - s }') s)"
  awk -F, 'NR > 1 { n++; if (n == 1) first = $6; last = $6; if ($6 < lo || n == 1) lo = $6 }
    END { if (n) printf "PUT ops/s: first step %.1f, last step %.1f, lowest %.1f\n", first, last, lo }' "$OUT/steps.csv"
  awk -F, 'NR > 1 { if ($14 > rss) rss = $14; if ($16 > hwm) hwm = $16 }
    END { printf "memory after a step: RSS up to %.1f MiB, peak (VmHWM) %.1f MiB\n", rss / 1024, hwm / 1024 }' "$OUT/steps.csv"
  awk -F, 'NR > 1 { printf "listing at %8d: %-13s median %9.2f ms  p90 %9.2f ms\n", $2, $3, $7, $8 }' "$OUT/listing.csv"
  awk -F, 'NR > 1 { printf "replication pass %d (%d device%s): %.2f s\n", $3, $4, ($4 == 1 ? "" : "s"), $5 }' "$OUT/replication.csv"
  echo "data: $OUT"
} | tee "$OUT/summary.txt"
if [ "$TARGET" = swift ] && [ "$swift_started" = 0 ]; then
  echo "(the reference Swift keeps container $container with its $OBJECTS objects)"
fi
