#!/usr/bin/env bash
# Makes sure a real OpenStack Keystone is installed for the tests that
# authenticate against one: keystone and gunicorn, the WSGI server the
# tests serve it with, in their own venv. It also gives the reference
# venv (scripts/swift-ref.sh) what python-swiftclient needs to log in with
# Keystone v3 credentials: python-keystoneclient and keystoneauth1.
# Prints a shell assignment, APUS_KEYSTONE_PYTHON=... (keystone-manage and
# gunicorn are its neighbours in the venv's bin).
#
#   KEYSTONE_VENV  where Keystone's venv lives
#                  (default $HOME/.cache/apus-keystone/venv)
#   PYTHON         the interpreter that creates it (default python3)
set -euo pipefail
KEYSTONE_VERSION=30.0.0
GUNICORN_VERSION=27.0.1
# For python-swiftclient in the reference venv.
KEYSTONECLIENT_VERSION=6.0.0
KEYSTONEAUTH1_VERSION=5.18.1
KEYSTONE_VENV="${KEYSTONE_VENV:-$HOME/.cache/apus-keystone/venv}"
PYTHON="${PYTHON:-python3}"

# Whether python $1 has each following package at the version after it.
has() {
  "$1" -c "import importlib.metadata as m, sys
sys.exit(any(m.version(n) != v for n, v in zip(sys.argv[1::2], sys.argv[2::2])))" "${@:2}" 2>/dev/null
}

{
  swift_python="$("$(dirname "$0")/swift-ref.sh")"
  if ! has "$KEYSTONE_VENV/bin/python" keystone "$KEYSTONE_VERSION" \
       gunicorn "$GUNICORN_VERSION"; then
    echo "[keystone] installing keystone==$KEYSTONE_VERSION and gunicorn==$GUNICORN_VERSION into $KEYSTONE_VENV"
    mkdir -p "$(dirname "$KEYSTONE_VENV")"
    [ -x "$KEYSTONE_VENV/bin/python" ] || "$PYTHON" -m venv "$KEYSTONE_VENV"
    "$KEYSTONE_VENV/bin/python" -m pip install -q "keystone==$KEYSTONE_VERSION" \
      "gunicorn==$GUNICORN_VERSION"
  fi
  # swiftclient logs in with v3 credentials only when both import.
  if ! has "$swift_python" python-keystoneclient "$KEYSTONECLIENT_VERSION" \
       keystoneauth1 "$KEYSTONEAUTH1_VERSION"; then
    echo "[keystone] installing python-keystoneclient==$KEYSTONECLIENT_VERSION and keystoneauth1==$KEYSTONEAUTH1_VERSION beside swiftclient"
    "$swift_python" -m pip install -q "python-keystoneclient==$KEYSTONECLIENT_VERSION" \
      "keystoneauth1==$KEYSTONEAUTH1_VERSION"
  fi
} >&2
echo "APUS_KEYSTONE_PYTHON=$KEYSTONE_VENV/bin/python"
