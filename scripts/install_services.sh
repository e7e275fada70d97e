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
bash "$(dirname "$0")/apt_install.sh" install_services "${need[@]}"
# Debian starts the packaged services; the tests never use them
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO service redis-server stop >/dev/null 2>&1 || true
$SUDO service postgresql stop >/dev/null 2>&1 || true
echo "install_services: installed ${need[*]}"
