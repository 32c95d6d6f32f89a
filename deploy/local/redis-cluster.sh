#!/usr/bin/env bash
# A local Redis Cluster for the tests: 3 masters + 3 replicas from the installed
# redis-server, on loopback ports, its files under .local/redis-cluster/ in the checkout.
#
#   deploy/local/redis-cluster.sh start   # starts it, waits for cluster_state:ok and for
#                                         # every replica's first sync, prints the node
#                                         # URLs (TEST_REDIS_CLUSTER_NODES)
#   deploy/local/redis-cluster.sh stop    # stops only the servers this script started
#   deploy/local/redis-cluster.sh nodes   # prints the node URLs
#
# Environment: REDIS_CLUSTER_BASE_PORT (first port, default 7100; the nodes use six in a
# row), REDIS_CLUSTER_DIR (default .local/redis-cluster).
#
# Each server writes its pid to its own pid file; `stop` signals exactly those pids, and
# only when the process still is a redis-server on that port. Persistence is off (no RDB,
# no AOF): a stopped cluster starts empty, which is what tests want.
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE="${REDIS_CLUSTER_BASE_PORT:-7100}"
DIR="${REDIS_CLUSTER_DIR:-$PWD/.local/redis-cluster}"
PORTS=()
for i in 0 1 2 3 4 5; do PORTS+=($((BASE + i))); done

nodes() {
  local out=() p
  for p in "${PORTS[@]}"; do out+=("redis://127.0.0.1:$p"); done
  (IFS=,; echo "${out[*]}")
}

ours() { # whether pid $1 is the redis-server this script started on port $2
  local cmd
  # A subshell, so a pid that is gone (a killed node) is quietly not ours.
  cmd="$( (tr '\0' ' ' <"/proc/$1/cmdline") 2>/dev/null || true)"
  [[ "$cmd" == *redis-server* && "$cmd" == *":$2"* ]]
}

stop() {
  local p pidfile pid n
  for p in "${PORTS[@]}"; do
    pidfile="$DIR/$p/redis.pid"
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    if ours "$pid" "$p"; then
      kill -TERM "$pid" 2>/dev/null || true
      # Bounded wait for the server to exit.
      for ((n = 0; n < 50; n++)); do ours "$pid" "$p" || break; sleep 0.1; done
      ours "$pid" "$p" && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

start() {
  command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
  stop
  local p
  for p in "${PORTS[@]}"; do
    rm -rf "${DIR:?}/$p"
    mkdir -p "$DIR/$p"
    redis-server --port "$p" --bind 127.0.0.1 --daemonize yes \
      --dir "$DIR/$p" --pidfile "$DIR/$p/redis.pid" --logfile "$DIR/$p/redis.log" \
      --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 2000 --save '' --appendonly no
  done
  local n
  for p in "${PORTS[@]}"; do
    for ((n = 0; n < 100; n++)); do
      redis-cli -p "$p" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  local addrs=()
  for p in "${PORTS[@]}"; do addrs+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log"
  # Every node must agree the cluster is ok (all slots covered) before tests use it.
  for p in "${PORTS[@]}"; do
    for ((n = 0; n < 200; n++)); do
      redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && break
      sleep 0.1
    done
    redis-cli -p "$p" cluster info | grep -q '^cluster_state:ok' || {
      echo "node $p never reported cluster_state:ok (see $DIR/$p/redis.log)" >&2
      exit 1
    }
  done
  # And every replica must have finished its first sync: a replica that never synced
  # refuses to fail over (its data is "too old"), so a test that kills a master right after
  # the start would find its slots lost rather than failed over.
  local replicas=0 up
  for ((n = 0; n < 300; n++)); do
    replicas=0 up=0
    for p in "${PORTS[@]}"; do
      local info
      info="$(redis-cli -p "$p" info replication 2>/dev/null || true)"
      if grep -q '^role:slave' <<<"$info"; then
        replicas=$((replicas + 1))
        grep -q '^master_link_status:up' <<<"$info" && up=$((up + 1))
      fi
    done
    [[ $replicas -eq 3 && $up -eq 3 ]] && break
    sleep 0.1
  done
  [[ $replicas -eq 3 && $up -eq 3 ]] || {
    echo "the replicas did not all sync with their masters ($up of $replicas linked; see $DIR/*/redis.log)" >&2
    exit 1
  }
  nodes
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  nodes) nodes ;;
  *) echo "usage: $0 start|stop|nodes" >&2; exit 2 ;;
esac
