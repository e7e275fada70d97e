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
bash "$(dirname "$0")/apt_install.sh" install_browser chromium
if [ ! -x "$CHROMIUM_PATH" ]; then
  echo "install_browser: chromium installed but $CHROMIUM_PATH not found" >&2
  exit 1
fi
echo "install_browser: installed $("$CHROMIUM_PATH" --version 2>/dev/null || echo chromium)"
