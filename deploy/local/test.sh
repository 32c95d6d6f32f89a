#!/usr/bin/env bash
# The whole test suite, as CI runs it: services up (started or installed if needed), then
# formatting, lints, the deployment checks, and every test against real Postgres and Redis.
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }

# The tests the cluster pass runs (nextest filter): see the "Redis Cluster" step.
CLUSTER_TESTS='package(dlq-core) | package(work-queue) | (package(integration-tests) & test(/^(cluster|api_dlq|api_retry_race|requeue_e2e|requeue_policy)::/))'

step "services"
# shellcheck source=deploy/local/services.sh
. deploy/local/services.sh
ensure_services
# Tests create (and drop) their own databases through the admin URL, and use their own
# Redis key prefixes.
export TEST_DATABASE_URL="$DATABASE_ADMIN_URL"
export TEST_REDIS_URL="$REDIS_URL"

step "embedding model (the model's own tests compare it with reference vectors)"
deploy/local/install-model.sh

step "browser for rendering and the console tests (Debian's chromium and chromium-driver)"
# The scrape worker renders pages in headless chromium over the DevTools protocol; the
# console's browser tests drive it over WebDriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  apt_install chromium chromium-driver
fi

step "MCP client for the MCP server's tests (the Python mcp SDK, in .local/mcp-client)"
deploy/local/mcp-client.sh >/dev/null

step "sqlx offline data (.sqlx/) matches the queries and migrations/"
deploy/local/sqlx-prepare.sh --check
# Every build below reads .sqlx/, never the database DATABASE_URL points at (services.sh
# exported it): a query without data there fails the build, as it would in CI and the image.
export SQLX_OFFLINE=true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build every binary (process tests start them)"
cargo build --workspace --bins --locked

step "deployment files (systemd units, Kubernetes manifests, Dockerfile)"
deploy/check.sh

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  # nextest does not run doctests.
  cargo test --workspace --doc --locked
else
  echo "cargo-nextest not installed; using cargo test (install it with: cargo install cargo-nextest --locked)"
  cargo test --workspace --locked --no-fail-fast
fi

step "Redis Cluster: 3 masters + 3 replicas on loopback, the Redis-touching tests again on it"
# Started here and stopped on exit (only the servers the script started; see the script).
trap 'deploy/local/redis-cluster.sh stop' EXIT
TEST_REDIS_CLUSTER_NODES="$(deploy/local/redis-cluster.sh start)"
export TEST_REDIS_CLUSTER_NODES
# The in-process API and requeue suites run with every family over 3 shards (the queue's
# and the DLQ's own suites test 1 and 3 shards themselves).
export TEST_QUEUE_SHARDS=3
# The queue's and the DLQ's own suites (every script of both), the API's DLQ routes and the
# requeue daemon's in-process suites (each family over 3 shards), and the cluster-only tests
# (ignored without a cluster, hence --run-ignored). --workspace with a filter, not -p, so
# the features (and the build) are the same as the pass above.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast --run-ignored all -E "$CLUSTER_TESTS"
else
  echo "cargo-nextest is needed for the cluster pass (cargo install cargo-nextest --locked)" >&2
  exit 1
fi
deploy/local/redis-cluster.sh stop
unset TEST_REDIS_CLUSTER_NODES TEST_QUEUE_SHARDS

step "schemathesis: the admin API against its OpenAPI document (all checks, bounded)"
deploy/local/schemathesis.sh
