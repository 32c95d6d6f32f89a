#!/usr/bin/env bash
# Quick start: brings everything up locally and runs a demo job end to end.
#
#   ./deploy/local/quickstart.sh          # demo, then keep running until Ctrl-C
#   ./deploy/local/quickstart.sh --once   # demo, summary, stop; exit 0 only if the demo
#                                         # ended as expected
#
# Steps: Postgres and Redis (started, or installed then started, if needed), the embedding
# model installed (deploy/local/install-model.sh), the binaries built, migrations applied, the three daemons and the API started (logs in .local/logs),
# a demo site served on 127.0.0.1, a demo job submitted, its progress shown, and a summary
# that ends with a search over the demo job's pages.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"

ONCE=0
for arg in "$@"; do
  case "$arg" in
    --once) ONCE=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1;32m==>\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33m==>\033[0m %s\n' "$*" >&2; }

STATE="$ROOT/.local"
LOGS="$STATE/logs"
mkdir -p "$LOGS"
DEMO_PORT="${DEMO_PORT:-8780}"
DEMO_TIMEOUT_SECS="${DEMO_TIMEOUT_SECS:-180}"

say "services"
# shellcheck source=deploy/local/services.sh
. deploy/local/services.sh
ensure_services

say "browser for pages that need JavaScript (Debian's chromium; docs/rendering.md)"
if ! command -v chromium >/dev/null 2>&1 && ! ( apt_install chromium ); then
  warn "chromium could not be installed: the demo runs with rendering off (render.enabled = false)"
  export PIPELINE__RENDER__ENABLED=false
fi

say "embedding model (all-MiniLM-L6-v2, installed once into .local/models)"
deploy/local/install-model.sh

say "building the binaries (first build takes a few minutes)"
# The query macros read the committed .sqlx/, not the (maybe not yet migrated) database.
SQLX_OFFLINE=true cargo build --bins --locked --quiet
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

# The demo's settings: the demo site is on 127.0.0.1, so the scraper must be allowed to
# fetch from it; retries, redrives and the reconciler are quick so the demo finishes in
# seconds. A dedicated key prefix keeps the demo's queues apart from anything else.
export PIPELINE__REDIS__KEY_PREFIX="${PIPELINE__REDIS__KEY_PREFIX:-pipeline-demo:}"
export PIPELINE__SCRAPE__ALLOW_PRIVATE_HOSTS="127.0.0.1"
export PIPELINE__SCRAPE__PER_HOST_MIN_DELAY_MS=50
export PIPELINE__QUEUE__MAX_ATTEMPTS=2
export PIPELINE__QUEUE__BACKOFF_BASE_MS=300
export PIPELINE__QUEUE__VISIBILITY_TIMEOUT_SECS=30
export PIPELINE__REQUEUE__REDRIVE_BASE_DELAY_SECS=1
export PIPELINE__REQUEUE__INTERVAL_MS=500
export PIPELINE__SHUTDOWN__DRAIN_TIMEOUT_SECS=10
if [ -z "${PIPELINE_API_KEY:-}" ]; then
  if [ ! -s "$STATE/api-key" ]; then
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$STATE/api-key")
  fi
  PIPELINE_API_KEY="$(cat "$STATE/api-key")"
fi
export PIPELINE_API_KEY

say "migrations"
"$BIN/pipelinectl" migrate

PIDS=()
stop_all() {
  if [ "${#PIDS[@]}" -gt 0 ]; then
    say "stopping (SIGTERM; each daemon drains its work)"
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
    PIDS=()
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$DEMO_PORT" 8742 9101 9102 9103; do
  port_free "$port" || { warn "port $port is in use (is another quick start running?)"; exit 1; }
done

start() {
  local name="$1"; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=("$!")
  printf '    %-18s pid %-7s log %s\n' "$name" "$!" "${LOGS#"$ROOT"/}/$name.log"
}
say "starting the daemons"
start demo-pages "$BIN/demo-pages" "$DEMO_PORT"
start scrape-worker "$BIN/scrape-worker"
start extraction-worker "$BIN/extraction-worker"
start facts-worker "$BIN/facts-worker"
start webhook-worker "$BIN/webhook-worker"
start requeue-daemon "$BIN/requeue-daemon"
start pipeline-api "$BIN/pipeline-api"

wait_ready() {
  local url="$1" name="$2"
  for _ in $(seq 1 60); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  warn "$name did not become ready; see its log"
  return 1
}
wait_ready "http://127.0.0.1:9101/ready" scrape-worker
wait_ready "http://127.0.0.1:9102/ready" extraction-worker
wait_ready "http://127.0.0.1:9104/ready" facts-worker
wait_ready "http://127.0.0.1:9105/ready" webhook-worker
wait_ready "http://127.0.0.1:9103/ready" requeue-daemon
wait_ready "http://127.0.0.1:8742/ready" pipeline-api
wait_ready "http://127.0.0.1:$DEMO_PORT/robots.txt" demo-pages

SITE="http://127.0.0.1:$DEMO_PORT"
say "submitting the demo job through the API"
RESPONSE="$(curl -fsS -X POST "http://127.0.0.1:8742/api/v1/scrape" \
  -H "X-API-Key: $PIPELINE_API_KEY" -H 'content-type: application/json' \
  -d "{\"urls\": [\"$SITE/articles/1\", \"$SITE/articles/2\", \"$SITE/articles/3\", \"$SITE/flaky\", \"$SITE/gone\", \"not-a-url\"], \"project_id\": null, \"source_group\": \"demo\"}")"
echo "    $RESPONSE"
JOB_ID="$(printf '%s' "$RESPONSE" | sed -n 's/.*"job_id" *: *"\([0-9a-f-]*\)".*/\1/p')"
[ -n "$JOB_ID" ] || { warn "no job id in the answer"; exit 1; }

job_field() {
  psql "$DATABASE_URL" -Atqc "SELECT $1 FROM jobs WHERE id = '$JOB_ID'"
}
say "progress of job $JOB_ID"
deadline=$(( $(date +%s) + DEMO_TIMEOUT_SECS ))
status=""
while :; do
  status="$(job_field status)"
  counts="$(psql "$DATABASE_URL" -Atqc "SELECT string_agg(s.status || '=' || n, ' ') FROM (SELECT s.status, count(*) n FROM job_sources js JOIN sources s ON s.id = js.source_id WHERE js.job_id = '$JOB_ID' GROUP BY 1 ORDER BY 1) s")"
  printf '    %s  job %-22s sources: %s\n' "$(date +%T)" "$status" "$counts"
  case "$status" in completed|failed|completed_with_errors) break ;; esac
  if [ "$(date +%s)" -ge "$deadline" ]; then warn "the demo did not finish in ${DEMO_TIMEOUT_SECS}s"; break; fi
  sleep 1
done

FLAKY_ID="$(psql "$DATABASE_URL" -Atqc "SELECT s.id FROM sources s JOIN job_sources js ON js.source_id = s.id WHERE js.job_id = '$JOB_ID' AND s.uri = '$SITE/flaky'")"
echo
say "summary"
echo "    job:     $JOB_ID  status: $status"
echo "    counts:  $(job_field result)"
echo
say "trace of $SITE/flaky (failed twice, dead-lettered, redriven, recovered)"
"$BIN/pipelinectl" trace "$FLAKY_ID" || true
echo
say "DLQ stats"
"$BIN/pipelinectl" dlq stats || true
echo
say "search over the demo job's pages: \"what happens when a worker dies?\""
"$BIN/pipelinectl" search "what happens when a worker dies?" -k 3 || true
cat <<INFO

    logs:     ${LOGS#"$ROOT"/}/*.log
    API:      http://127.0.0.1:8742   (X-API-Key: $PIPELINE_API_KEY, also in .local/api-key)
    try:
      curl -s -H "X-API-Key: $PIPELINE_API_KEY" http://127.0.0.1:8742/api/v1/dlq/stats
      curl -s -H "X-API-Key: $PIPELINE_API_KEY" http://127.0.0.1:8742/api/v1/jobs/$JOB_ID
      curl -s -H "X-API-Key: $PIPELINE_API_KEY" 'http://127.0.0.1:8742/api/v1/search?q=redrive+failed+messages&k=3'
      PIPELINE__REDIS__KEY_PREFIX=$PIPELINE__REDIS__KEY_PREFIX ${BIN#"$ROOT"/}/pipelinectl dlq list scrape
      PIPELINE__REDIS__KEY_PREFIX=$PIPELINE__REDIS__KEY_PREFIX ${BIN#"$ROOT"/}/pipelinectl jobs show $JOB_ID
      curl -s http://127.0.0.1:9101/metrics | grep pipeline_
INFO

# Expected: the three articles and the flaky page extracted, /gone dead-lettered for good,
# the invalid URL reported: so the job ends completed_with_errors with 4 extracted.
extracted="$(psql "$DATABASE_URL" -Atqc "SELECT count(*) FROM job_sources js JOIN sources s ON s.id = js.source_id WHERE js.job_id = '$JOB_ID' AND s.status = 'extracted'")"
ok=0
if [ "$status" = "completed_with_errors" ] && [ "$extracted" = "4" ]; then
  say "demo ended as expected: 4 sources extracted, 1 dead-lettered for good, 1 invalid URL reported"
else
  warn "demo did not end as expected (status=$status, extracted=$extracted of 4)"
  ok=1
fi

if [ "$ONCE" -eq 1 ]; then
  exit "$ok"
fi
say "running; press Ctrl-C to stop everything this script started"
wait
