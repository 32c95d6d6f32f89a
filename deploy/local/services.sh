#!/usr/bin/env bash
# Makes Postgres and Redis reachable for the local quick start and the tests.
#
# For each service, in order: use it if it already answers; else start an installed one;
# else (as root, on Debian/Ubuntu) install it with apt-get and start it. The system's own
# packages are used rather than project-local instances because initdb refuses to run as
# root and a distribution's service is what a developer machine usually has anyway.
#
# Source this file (`. deploy/local/services.sh`) and call `ensure_services`; afterwards
# DATABASE_ADMIN_URL (a URL to the `postgres` database), DATABASE_URL (the pipeline's
# database, created if missing) and REDIS_URL are exported.
#
# Environment: DATABASE_URL, REDIS_URL (defaults: postgres://postgres@127.0.0.1:5432/pipeline,
# redis://127.0.0.1:6379/0), PIPELINE_DB_NAME (default: pipeline).

set -euo pipefail

log() { printf '\033[1;34m[services]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[services] error:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else return 1
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* yourself, then run again"
  log "installing $* with apt-get"
  if [ -z "${APT_UPDATED:-}" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
    || die "apt-get install $* failed"
}

pg_answers() { psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1; }

start_postgres() {
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    local version
    for version in $(ls /etc/postgresql); do
      log "starting installed PostgreSQL $version"
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
        || as_root pg_ctlcluster "$version" main start 2>/dev/null || true
    done
    return 0
  fi
  return 1
}

ensure_postgres() {
  local url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/pipeline}"
  local db="${PIPELINE_DB_NAME:-pipeline}"
  # URL of the same server's `postgres` database (strip the path and query).
  local base="${url%%\?*}"
  base="${base%/*}"
  local admin="$base/postgres"
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client
  if ! pg_answers "$admin"; then
    start_postgres || { apt_install postgresql; start_postgres || true; }
    for _ in $(seq 1 30); do pg_answers "$admin" && break; sleep 1; done
  fi
  if ! pg_answers "$admin"; then
    # A fresh Debian cluster refuses password-less TCP logins. Give the postgres role a
    # local-development password and use it (printed so the user knows).
    if [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null 2>&1 \
       && runuser -u postgres -- psql -Atqc 'SELECT 1' >/dev/null 2>&1; then
      log "setting the postgres role's password to 'postgres' for local development"
      runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
      base="postgres://postgres:postgres@${base#*@}"
      admin="$base/postgres"
    fi
  fi
  pg_answers "$admin" || die "cannot reach PostgreSQL at ${admin%%@*}@... (set DATABASE_URL)"
  if [ "$(psql "$admin" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
    log "creating database $db"
    psql "$admin" -qc "CREATE DATABASE \"$db\"" >/dev/null
  fi
  export DATABASE_ADMIN_URL="$admin"
  export DATABASE_URL="$base/$db"
  log "PostgreSQL ready"
}

redis_answers() { [ "$(redis-cli -u "$1" PING 2>/dev/null)" = "PONG" ]; }

start_redis() {
  command -v redis-server >/dev/null 2>&1 || return 1
  log "starting installed Redis (no persistence, loopback only)"
  local dir="${PIPELINE_REDIS_DIR:-/var/lib/redis}"
  [ -w "$dir" ] || dir="$(pwd)/.local/redis"
  mkdir -p "$dir"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir "$dir" --logfile "$dir/redis.log" >/dev/null
}

ensure_redis() {
  local url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
  command -v redis-cli >/dev/null 2>&1 || apt_install redis-tools
  if ! redis_answers "$url"; then
    start_redis || { apt_install redis-server; start_redis || true; }
    for _ in $(seq 1 30); do redis_answers "$url" && break; sleep 1; done
  fi
  redis_answers "$url" || die "cannot reach Redis at $url (set REDIS_URL)"
  export REDIS_URL="$url"
  log "Redis ready"
}

ensure_services() {
  ensure_postgres
  ensure_redis
}

# Run directly: make the services reachable and print the URLs.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  ensure_services
  echo "DATABASE_URL=$DATABASE_URL"
  echo "REDIS_URL=$REDIS_URL"
fi
