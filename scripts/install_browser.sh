#!/usr/bin/env bash
# Install Debian's Chromium for the web-player tests (tests/web), unless it is already there.
# Idempotent; needs root (or sudo) and apt. Playwright's own browser downloads are never used.
# CHROMIUM_PATH overrides the expected binary (default /usr/bin/chromium).
set -euo pipefail
CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ -x "$CHROMIUM_PATH" ]; then
  echo "install_browser: chromium present at $CHROMIUM_PATH"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: $CHROMIUM_PATH missing and apt-get not found; install Chromium yourself and set CHROMIUM_PATH" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install_browser: need root (or sudo) to apt-get install chromium" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
if [ ! -x "$CHROMIUM_PATH" ]; then
  echo "install_browser: chromium installed but $CHROMIUM_PATH not found" >&2
  exit 1
fi
echo "install_browser: installed $("$CHROMIUM_PATH" --version 2>/dev/null || echo chromium)"
