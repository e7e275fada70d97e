#!/usr/bin/env bash
# The test command: set up the dev environment, lint, type-check, run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k speech).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_dev.sh
bash scripts/install_browser.sh   # Debian's Chromium for the web-player test (no-op when present)
uv run --no-sync ruff check api tests scripts
uv run --no-sync ruff format --check api tests scripts
uv run --no-sync mypy
set +e
uv run --no-sync pytest -q -ra --durations=30 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
