#!/usr/bin/env bash
# Creates the virtualenv; on Debian/Ubuntu installs python3-venv first when it is missing.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
if ! command -v "$python" >/dev/null; then
  echo "error: $python not found; install Python 3.11 or newer (apt-get install python3)" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $python is $("$python" --version 2>&1); bridge-exporter needs Python 3.11+" >&2
  exit 1
fi
if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
  rm -rf "$venv"
  echo "python venv support is missing; installing python3-venv" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  "$python" -m venv "$venv"
fi
