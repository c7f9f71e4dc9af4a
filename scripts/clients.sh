#!/usr/bin/env bash
# Makes sure the third-party clients the client tests drive are installed:
# rclone (Debian's package), openstacksdk, python-glanceclient and s3cmd
# (in their own venv). Prints them as shell assignments, APUS_RCLONE=...,
# APUS_OPENSTACK_PYTHON=..., APUS_GLANCE=... and APUS_S3CMD=...
#
#   CLIENTS_VENV   where openstacksdk's venv lives
#                  (default $HOME/.cache/apus-clients/venv)
#   PYTHON         the interpreter that creates it (default python3)
set -euo pipefail
OPENSTACKSDK_VERSION=4.22.0
S3CMD_VERSION=2.4.0
GLANCECLIENT_VERSION=4.13.0
CLIENTS_VENV="${CLIENTS_VENV:-$HOME/.cache/apus-clients/venv}"
PYTHON="${PYTHON:-python3}"

{
  if ! command -v rclone >/dev/null 2>&1; then
    echo "[clients] installing rclone (Debian package)"
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get install -y -q rclone >/dev/null ||
      { $sudo_cmd apt-get update -q >/dev/null && $sudo_cmd apt-get install -y -q rclone >/dev/null; }
  fi
  if ! "$CLIENTS_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('openstacksdk') != '$OPENSTACKSDK_VERSION')" 2>/dev/null; then
    echo "[clients] installing openstacksdk==$OPENSTACKSDK_VERSION into $CLIENTS_VENV"
    mkdir -p "$(dirname "$CLIENTS_VENV")"
    [ -x "$CLIENTS_VENV/bin/python" ] || "$PYTHON" -m venv "$CLIENTS_VENV"
    "$CLIENTS_VENV/bin/python" -m pip install -q "openstacksdk==$OPENSTACKSDK_VERSION"
  fi
  if ! "$CLIENTS_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('s3cmd') != '$S3CMD_VERSION')" 2>/dev/null; then
    echo "[clients] installing s3cmd==$S3CMD_VERSION into $CLIENTS_VENV"
    "$CLIENTS_VENV/bin/python" -m pip install -q "s3cmd==$S3CMD_VERSION"
  fi
  if ! "$CLIENTS_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('python-glanceclient') != '$GLANCECLIENT_VERSION')" 2>/dev/null; then
    echo "[clients] installing python-glanceclient==$GLANCECLIENT_VERSION into $CLIENTS_VENV"
    "$CLIENTS_VENV/bin/python" -m pip install -q "python-glanceclient==$GLANCECLIENT_VERSION"
  fi
} >&2
echo "APUS_RCLONE=$(command -v rclone)"
echo "APUS_OPENSTACK_PYTHON=$CLIENTS_VENV/bin/python"
echo "APUS_S3CMD=$CLIENTS_VENV/bin/s3cmd"
echo "APUS_GLANCE=$CLIENTS_VENV/bin/glance"
