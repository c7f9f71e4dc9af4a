#!/usr/bin/env bash
# Makes sure the reference OpenStack Swift (2.38.3) is installed in a venv and
# prints the path of its python. The compatibility tests compare apus with it,
# and drive apus with its client, python-swiftclient's `swift` command, and
# with boto3 for S3.
#
#   SWIFT_VENV   where the venv lives (default $HOME/.cache/swift-ref/swift-venv)
#   PYTHON       the interpreter that creates it (default python3)
set -euo pipefail
SWIFT_VERSION=2.38.3
SWIFTCLIENT_VERSION=4.11.0
# The S3 tests sign requests with botocore (the pins of
# ../shared/conformance's constraints, which installs into the same venv).
BOTO3_VERSION=1.44.5
SWIFT_VENV="${SWIFT_VENV:-$HOME/.cache/swift-ref/swift-venv}"
PYTHON="${PYTHON:-python3}"

if [ -x "$SWIFT_VENV/bin/python" ] &&
   "$SWIFT_VENV/bin/python" -c "import swift.common.ring, swiftclient, boto3, botocore, importlib.metadata as m, sys; sys.exit(m.version('swift') != '$SWIFT_VERSION')" 2>/dev/null; then
  echo "$SWIFT_VENV/bin/python"
  exit 0
fi
{
  echo "[swift-ref] installing swift==$SWIFT_VERSION into $SWIFT_VENV"
  mkdir -p "$(dirname "$SWIFT_VENV")"
  [ -x "$SWIFT_VENV/bin/python" ] || "$PYTHON" -m venv "$SWIFT_VENV"
  "$SWIFT_VENV/bin/python" -m pip install -q --upgrade pip
  "$SWIFT_VENV/bin/python" -m pip install -q "swift==$SWIFT_VERSION" \
    "python-swiftclient==$SWIFTCLIENT_VERSION" \
    "boto3==$BOTO3_VERSION" "botocore==$BOTO3_VERSION"
} >&2
echo "$SWIFT_VENV/bin/python"
