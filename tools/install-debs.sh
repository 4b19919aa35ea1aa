#!/usr/bin/env bash
# install-debs.sh "TOOLS..." PACKAGES...: installs the Debian packages when any of the
# tools is missing. Without root or apt it says what to install and exits 0: the tests
# then skip locally and FAIL in CI (CI=true), so CI can never pass by skipping.
set -euo pipefail
tools=$1; shift
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
missing=""
for tool in $tools; do have "$tool" || missing="$missing $tool"; done
[ -z "$missing" ] && exit 0
echo "test tools missing:$missing; installing Debian packages: $*" >&2
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
if ! command -v apt-get >/dev/null || { [ -n "$sudo" ] && ! sudo -n true 2>/dev/null; }; then
  echo "warning: cannot install them here (need apt-get and root); run: sudo apt-get install $*" >&2
  exit 0
fi
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
