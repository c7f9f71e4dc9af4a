#!/usr/bin/env bash
# S3 load benchmark: apus serve's S3 layer against the reference Swift's
# s3api middleware, side by side on this machine: scripts/bench.sh with
# API=s3 (4 KiB PUT/GET/HEAD/DELETE ops/s and 1 GiB PUT/GET MB/s through
# apus bench suite --s3; the same knobs, less LISTING and POLICY).
set -euo pipefail
API=s3 exec "$(dirname "$0")/bench.sh" "$@"
