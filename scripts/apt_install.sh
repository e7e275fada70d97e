#!/usr/bin/env bash
# apt-get install the given Debian packages (binaries only), as root or through sudo.
# The one place the setup scripts (install_browser.sh, install_services.sh) install from apt.
# Usage: bash scripts/apt_install.sh WHO PACKAGE...   (WHO prefixes the messages)
set -euo pipefail
who="$1"
shift
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$who: missing $* and apt-get not found; install them yourself" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "$who: need root (or sudo) to apt-get install $*" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "$@"
