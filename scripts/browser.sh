#!/usr/bin/env bash
# Makes sure the browser the console tests drive is installed: Debian's
# chromium and chromium-driver (chromedriver, which speaks WebDriver).
# Prints them as shell assignments, APUS_CHROMIUM=... and
# APUS_CHROMEDRIVER=...
#
#   APUS_CHROMIUM      a browser to use instead (default /usr/bin/chromium)
#   APUS_CHROMEDRIVER  its driver (default /usr/bin/chromedriver)
set -euo pipefail
CHROMIUM="${APUS_CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${APUS_CHROMEDRIVER:-/usr/bin/chromedriver}"

{
  if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then
    echo "[browser] installing chromium and chromium-driver (Debian packages)"
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get install -y -q chromium chromium-driver >/dev/null ||
      { $sudo_cmd apt-get update -q >/dev/null &&
        $sudo_cmd apt-get install -y -q chromium chromium-driver >/dev/null; }
  fi
  for tool in "$CHROMIUM" "$CHROMEDRIVER"; do
    [ -x "$tool" ] || { echo "[browser] $tool is still missing"; exit 1; }
  done
} >&2
echo "APUS_CHROMIUM=$CHROMIUM"
echo "APUS_CHROMEDRIVER=$CHROMEDRIVER"
