#!/usr/bin/env bash
# Development/CI environment: the locked dependencies (dev group, offline assets) plus a CPU-only
# torch. torch is an extra in pyproject.toml, so `uv sync` leaves it out and uv.lock stays portable;
# here we add the CPU build: from a local wheel directory when the machine has one (WHEEL_DIR,
# default /opt/wheels), else from PyTorch's CPU index. `uv run` syncs inexactly and keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
uv sync --frozen
WHEEL_DIR="${WHEEL_DIR:-/opt/wheels}"
if compgen -G "$WHEEL_DIR/torch-2.13.0*.whl" >/dev/null; then
  uv pip install -q "torch==2.13.0" --find-links "$WHEEL_DIR"
else
  uv pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
if uv pip list 2>/dev/null | grep -qi '^nvidia-'; then
  echo "setup_dev: CUDA (nvidia-*) packages were installed; expected a CPU-only torch" >&2
  exit 1
fi
# Real PostgreSQL and Redis binaries for the shared-state tests (apt, when missing)
bash scripts/install_services.sh
