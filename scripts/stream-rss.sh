#!/usr/bin/env bash
# Measures what streaming costs in memory: the peak RSS (VmHWM) of a
# release `apus serve` while it stores and serves a 2 GiB static large
# object of eight 256 MiB segments (whole, and ranges across segment
# boundaries), and while it extracts a 200-file tar.gz. Prints one line
# per phase; checks every byte it reads back.
#
#   SEGMENT_MIB   segment size (default 256); the object is 8 of them
#   FILES         files in the archive (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
SEGMENT_MIB="${SEGMENT_MIB:-256}"
FILES="${FILES:-200}"

cargo build --release --locked -p apus >&2
work="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

target/release/apus serve --data "$work/data" --bind 127.0.0.1:0 >"$work/out" 2>"$work/log" &
pid=$!
endpoint=""
for _ in $(seq 60); do
  endpoint="$(sed -n 's|^ *proxy *\(http://[0-9.:]*\)$|\1|p' "$work/out" | head -n 1)"
  [ -n "$endpoint" ] && curl -sf "$endpoint/healthcheck" >/dev/null && break
  sleep 0.5
done
token="$(curl -s -D - -o /dev/null -H 'X-Auth-User: test:tester' -H 'X-Auth-Key: testing' \
  "$endpoint/auth/v1.0" | tr -d '\r' | sed -n 's/^[Xx]-[Aa]uth-[Tt]oken: //p')"
api="$endpoint/v1/AUTH_test"
auth=(-H "X-Auth-Token: $token")
peak() { awk '/VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$pid/status"; }

echo "started: peak RSS $(peak)"
curl -sf "${auth[@]}" -X PUT "$api/segs" -o /dev/null
curl -sf "${auth[@]}" -X PUT "$api/big" -o /dev/null
manifest="["
for i in $(seq 0 7); do
  head -c "$((SEGMENT_MIB * 1024 * 1024))" /dev/urandom >"$work/s$i"
  etag="$(md5sum "$work/s$i" | cut -d' ' -f1)"
  curl -sf "${auth[@]}" -T "$work/s$i" "$api/segs/s$i" -o /dev/null
  [ "$i" = 0 ] || manifest+=","
  manifest+="{\"path\": \"segs/s$i\", \"etag\": \"$etag\"}"
done
manifest+="]"
echo "8 segments of $SEGMENT_MIB MiB stored: peak RSS $(peak)"
curl -sf "${auth[@]}" -X PUT --data-binary "$manifest" "$api/big/video?multipart-manifest=put" -o /dev/null
want="$(cat "$work"/s{0..7} | md5sum | cut -d' ' -f1)"
got="$(curl -sf "${auth[@]}" "$api/big/video" | md5sum | cut -d' ' -f1)"
[ "$want" = "$got" ] || { echo "whole GET: md5 $got, want $want"; exit 1; }
echo "whole GET of $((SEGMENT_MIB * 8)) MiB (md5 matches): peak RSS $(peak)"
seg=$((SEGMENT_MIB * 1024 * 1024))
for i in 1 3 6; do
  start=$((i * seg - 1000)); end=$((i * seg + 999))
  # head closes the pipe early: cat's SIGPIPE is expected, not a failure.
  want="$( (cat "$work"/s{0..7} | tail -c +"$((start + 1))" | head -c 2000 | md5sum | cut -d' ' -f1) || true)"
  got="$(curl -sf "${auth[@]}" -H "Range: bytes=$start-$end" "$api/big/video" | md5sum | cut -d' ' -f1)"
  [ "$want" = "$got" ] || { echo "range $start-$end: md5 $got, want $want"; exit 1; }
done
start=$((seg / 2)); end=$((5 * seg + seg / 2 - 1))
got="$(curl -sf "${auth[@]}" -H "Range: bytes=$start-$end" "$api/big/video" | wc -c)"
[ "$got" = "$((end - start + 1))" ] || { echo "range over 5 segments: $got bytes"; exit 1; }
echo "ranged GETs across segment boundaries (checked): peak RSS $(peak)"
rm -f "$work"/s?

mkdir -p "$work/tree/tarred"
for i in $(seq 1 "$FILES"); do
  head -c 1048576 /dev/urandom >"$work/tree/tarred/f$i"
done
tar -C "$work/tree" -czf "$work/files.tar.gz" tarred
rm -rf "$work/tree"
result="$(curl -sf "${auth[@]}" -H 'Accept: application/json' -T "$work/files.tar.gz" \
  "$api?extract-archive=tar.gz")"
echo "$result" | grep -q "\"Number Files Created\": *$FILES" || { echo "extraction: $result"; exit 1; }
echo "$FILES-file tar.gz ($(($(stat -c %s "$work/files.tar.gz") / 1048576)) MiB) extracted: peak RSS $(peak)"
