#!/usr/bin/env bash
# Refreshes sqlx's offline query data in .sqlx/ (or, with --check, fails if it is stale).
#
#   ./deploy/local/sqlx-prepare.sh          # rewrite .sqlx/ from the current queries and schema
#   ./deploy/local/sqlx-prepare.sh --check  # regenerate into a scratch folder and compare
#
# The query macros (sqlx::query!, query_as!, query_scalar!) check every statement against a
# database when the code compiles; builds with SQLX_OFFLINE=true (the test command, CI, the
# Dockerfile) read the committed .sqlx/ instead. Run this after changing a query or adding a
# migration, and commit .sqlx/.
#
# Steps: Postgres made reachable (deploy/local/services.sh); a scratch database created on
# that server and every migration of migrations/ applied to it with psql; the crates that use
# the macros checked against it with SQLX_OFFLINE_DIR set, so the macros write one
# query-<hash>.json per statement (what `cargo sqlx prepare` does too, without needing
# sqlx-cli); the scratch database dropped. The check builds in target/sqlx-prepare, so the
# normal target directory is left alone.
#
# Environment: as services.sh (DATABASE_URL picks the server).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"

CHECK=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

# shellcheck source=deploy/local/services.sh
. deploy/local/services.sh
ensure_postgres

say() { printf '\033[1;34m[sqlx]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[sqlx] error:\033[0m %s\n' "$*" >&2; exit 1; }

# The packages whose code calls the query macros: only those need checking again.
mapfile -t PACKAGES < <(
  grep -rlE 'sqlx::query(_as|_scalar)?!' --include='*.rs' crates tests \
    | sed -E 's#^(crates/[^/]+|tests)/.*#\1#' | sort -u \
    | while read -r dir; do
        sed -nE 's/^name = "([^"]+)"/\1/p' "$dir/Cargo.toml" | head -n1
      done
)
[[ ${#PACKAGES[@]} -gt 0 ]] || die "no package uses the sqlx query macros"

# psql's notices (a migration's "does not exist, skipping") are noise here.
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
SCRATCH="sqlx_prepare_$$"
BASE="${DATABASE_ADMIN_URL%/*}"
SCRATCH_URL="$BASE/$SCRATCH"
OUT="$ROOT/.sqlx"
TMP=""
cleanup() {
  psql "$DATABASE_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $SCRATCH WITH (FORCE)" >/dev/null 2>&1 || true
  if [[ -n "$TMP" ]]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT

say "scratch database $SCRATCH: applying migrations/"
psql "$DATABASE_ADMIN_URL" -qc "CREATE DATABASE $SCRATCH" >/dev/null
for f in migrations/*.sql; do
  psql "$SCRATCH_URL" -q -v ON_ERROR_STOP=1 -1 -f "$f" >/dev/null || die "migration $f failed"
done
# The migrator's own table, as sqlx creates it: the store reads it (schema_status), so its
# queries are checked against it like any other table.
psql "$SCRATCH_URL" -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
);
SQL

if [[ $CHECK -eq 1 ]]; then
  TMP="$(mktemp -d)"
  DEST="$TMP"
else
  mkdir -p "$OUT"
  rm -f "$OUT"/query-*.json
  DEST="$OUT"
fi

# cargo does not know that the macros' output depends on the database, so the packages are
# cleaned first (in a target directory of their own) to make the macros run again.
export CARGO_TARGET_DIR="$ROOT/target/sqlx-prepare"
pkg_args=()
for p in "${PACKAGES[@]}"; do pkg_args+=(-p "$p"); done
say "checking ${PACKAGES[*]} against the scratch database"
cargo clean --quiet "${pkg_args[@]}"
DATABASE_URL="$SCRATCH_URL" SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$DEST" \
  cargo check --quiet --locked --all-targets "${pkg_args[@]}" \
  || die "a query does not compile against the schema of migrations/"

count=$(find "$DEST" -name 'query-*.json' | wc -l)
if [[ $CHECK -eq 1 ]]; then
  if ! diff -r -q "$OUT" "$DEST" >/dev/null 2>&1; then
    diff -r -q "$OUT" "$DEST" >&2 || true
    die ".sqlx/ is stale: run ./deploy/local/sqlx-prepare.sh and commit .sqlx/"
  fi
  say ".sqlx/ is current ($count queries)"
else
  say "wrote $count query files to .sqlx/"
fi
