#!/usr/bin/env bash
# Install the real servers the shared-state tests start on loopback (tests/services.py):
# Redis (redis-server) and PostgreSQL (initdb, pg_ctl), unless they are already there.
# Idempotent; needs root (or sudo) and apt. Under root, PostgreSQL runs as the 'postgres' user,
# which Debian's postgresql package creates.
set -euo pipefail
have_pg() {
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
have_pg || need+=(postgresql)
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  need+=(postgresql)
fi
if [ ${#need[@]} -eq 0 ]; then
  echo "install_services: redis-server and PostgreSQL present"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_services: missing ${need[*]} and apt-get not found; install them yourself" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install_services: need root (or sudo) to apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# --no-install-recommends: the binaries only; the tests start their own servers in temp dirs
$SUDO apt-get install -y --no-install-recommends "${need[@]}"
# Debian starts the packaged services; the tests never use them
$SUDO service redis-server stop >/dev/null 2>&1 || true
$SUDO service postgresql stop >/dev/null 2>&1 || true
echo "install_services: installed ${need[*]}"
