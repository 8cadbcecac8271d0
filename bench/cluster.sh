#!/usr/bin/env bash
# bench/cluster.sh: a chatofpomelo cluster end to end, the real one next to ours, on this machine
# in one run (docs/performance.md, "Cluster"). Each cluster is 1 gate, 3 connectors and 3 chat
# servers, one process each, in chatofpomelo's port layout (gate B+14, connectors B+50..52, for
# a free base B); bench/cluster.js starts it, plays its clients (forwarded request latency at a
# fixed rate, throughput with a window of requests in flight, a room of users spread over the
# connectors broadcasting), reads the CPU time of every process of the cluster, stops it, and
# goes on with the next one; the order alternates round by round. The summary is the median of
# the rounds, with ratios. Nothing here asserts on time; a correctness failure (an onChat lost
# or doubled, a wrong answer) exits 1. About 40 s per cluster and round.
#
#   bash bench/cluster.sh                     # the comparison: CLUSTERS, ROUNDS rounds
#   setsid bash bench/cluster.sh up NAME      # one cluster alone, until its group is killed
#
# Clusters (NAME):
#   pomelo          the real chatofpomelo game server rebuilt for pomelo 2.2.7 (npm), in
#                   bench/peers/chatofpomelo (`npm ci` there): `node app.js`, the master, starts
#                   the 7 servers; RPC over pomelo-rpc's MQTT, as shipped (Nagle on);
#   pomelo-nodelay  the same with TCP_NODELAY on every socket (bench/peers/chatofpomelo/nodelay.js
#                   preloaded): without it, every RPC hop that writes twice waits for a delayed
#                   ACK, up to 40 ms;
#   ours            nats-server (Debian's) and 7 pomelo-chat processes (--role gate|connector|chat
#                   --nats URL --id ID), the connectors and chat servers with pomelo's ids;
#   single          pomelo-chat in one process (gate and connector ports, chat in-process): the
#                   same protocol at the gate, for comparison or before cluster mode exists.
# Both pomelo variants get tests/peers/pomelo-server/shim.js (spec Appendix B: loopback-only
# listen, and the raw-TCP write fix without which pomelo 2.2.7 cannot talk raw TCP on node 20).
# `up` prints `cluster-ready HOST:PORT connectors=N chat=N` when every server has started (the
# driver then probes until the gate and every connector and chat server answer) and waits; the
# logs go to CLUSTER_LOG_DIR (default: a temporary directory, kept, printed on stderr).
#
# Environment: CLUSTERS (default "pomelo-nodelay ours pomelo"; "pomelo-nodelay single pomelo"
# when pomelo-chat has no cluster mode yet), ROUNDS (3), TRANSPORT (tcp or ws, default tcp),
# BUILD_DIR (a release build with the examples, default build-cluster; configured if missing),
# NODE (node), CLUSTER_ARGS (more options for bench/cluster.js, e.g. "--rate 500 --window 64"),
# CLUSTER_JSON (a file for every figure), CLUSTER_ANNOUNCE_MS (--announce-ms of pomelo-chat),
# CLUSTER_BASE_PORT (B instead of a free one), NATS_SERVER (default /usr/sbin/nats-server).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD_DIR:-$root/build-cluster}
node=${NODE:-node}
nats_server=${NATS_SERVER:-/usr/sbin/nats-server}
app=$here/peers/chatofpomelo
shim=$root/tests/peers/pomelo-server/shim.js

# The pomelo-chat binary of the build (examples/chat/ or examples/).
chat_bin() {
  local b
  for b in "$build/examples/chat/pomelo-chat" "$build/examples/pomelo-chat"; do
    if [ -x "$b" ]; then
      echo "$b"
      return 0
    fi
  done
  return 1
}

port_busy() {
  ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}

# A base B whose ports B+5 (master), B+14 (gate), B+50..52 (connectors), B+1050..1055 (RPC)
# and B+1222 (nats) are free, all below the ephemeral range (32768 and up): a listener there
# could collide with the local port of a client's connection (bench-load's, the driver's).
pick_base() {
  local b p busy tries
  if [ -n "${CLUSTER_BASE_PORT:-}" ]; then
    echo "$CLUSTER_BASE_PORT"
    return
  fi
  for tries in $(seq 1 50); do
    b=$((20000 + (RANDOM % 110) * 100))
    busy=0
    for p in 5 14 50 51 52 1050 1051 1052 1053 1054 1055 1222; do
      if port_busy $((b + p)); then
        busy=1
        break
      fi
    done
    if [ "$busy" = 0 ]; then
      echo "$b"
      return
    fi
  done
  echo "cluster.sh: no free ports found" >&2
  exit 1
}

# wait_listen PORT SECONDS LOG: until something listens on 127.0.0.1:PORT.
wait_listen() {
  local i
  for i in $(seq 1 $(($2 * 10))); do
    if port_busy "$1"; then
      return 0
    fi
    sleep 0.1
  done
  echo "cluster.sh: nothing listens on port $1 after $2 s (log: $3)" >&2
  tail -20 "$3" >&2 || true
  exit 1
}

# wait_line FILE REGEX SECONDS: until FILE has a line matching REGEX.
wait_line() {
  local i
  for i in $(seq 1 $(($3 * 10))); do
    if grep -Eq "$2" "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "cluster.sh: no line /$2/ in $1 after $3 s" >&2
  tail -20 "$1" >&2 || true
  exit 1
}

up() {
  local name=$1 base logdir bin url i pre
  base=$(pick_base)
  logdir=${CLUSTER_LOG_DIR:-$(mktemp -d -t pomelo-cluster.XXXXXX)}
  mkdir -p "$logdir"
  echo "cluster.sh: $name, base port $base, logs in $logdir" >&2
  case $name in
    pomelo | pomelo-nodelay)
      if [ ! -d "$app/node_modules/pomelo" ]; then
        echo "cluster.sh: run npm ci in bench/peers/chatofpomelo first" >&2
        exit 1
      fi
      pre="--require=$shim"
      if [ "$name" = pomelo-nodelay ]; then
        pre="$pre --require=$app/nodelay.js"
      fi
      (cd "$app" && CHAT_GATE_PORT=$((base + 14)) CHAT_CONNECTOR_PORT=$((base + 50)) \
        CHAT_RPC_PORT=$((base + 1050)) CHAT_MASTER_PORT=$((base + 5)) \
        PEER_WATCH_PID=${BENCH_DRIVER_PID:-} PEER_MAX_SECONDS=${CLUSTER_MAX_SECONDS:-3600} \
        NODE_OPTIONS="$pre" exec "$node" app.js) >"$logdir/$name.log" 2>&1 &
      for i in 14 50 51 52; do
        wait_listen $((base + i)) 60 "$logdir/$name.log"
      done
      echo "cluster-ready 127.0.0.1:$((base + 14)) connectors=3 chat=3"
      ;;
    ours)
      bin=$(chat_bin) || { echo "cluster.sh: no pomelo-chat in $build" >&2; exit 1; }
      "$nats_server" -a 127.0.0.1 -p $((base + 1222)) >"$logdir/nats.log" 2>&1 &
      wait_listen $((base + 1222)) 20 "$logdir/nats.log"
      url=nats://127.0.0.1:$((base + 1222))
      local extra=()
      if [ -n "${CLUSTER_ANNOUNCE_MS:-}" ]; then
        extra=(--announce-ms "$CLUSTER_ANNOUNCE_MS")
      fi
      for i in 1 2 3; do
        "$bin" --role chat --nats "$url" --id "chat-server-$i" "${extra[@]}" \
          >"$logdir/chat-server-$i.log" 2>&1 &
      done
      for i in 1 2 3; do
        "$bin" --role connector --nats "$url" --id "connector-server-$i" --host 127.0.0.1 \
          --port $((base + 49 + i)) "${extra[@]}" >"$logdir/connector-server-$i.log" 2>&1 &
      done
      "$bin" --role gate --nats "$url" --id gate-server-1 --host 127.0.0.1 \
        --port $((base + 14)) "${extra[@]}" >"$logdir/gate-server-1.log" 2>&1 &
      for i in 1 2 3; do
        wait_line "$logdir/chat-server-$i.log" "^ready chat-server-$i\$" 30
        wait_line "$logdir/connector-server-$i.log" "^ready connector-server-$i " 30
      done
      wait_line "$logdir/gate-server-1.log" "^ready gate-server-1 " 30
      echo "cluster-ready 127.0.0.1:$((base + 14)) connectors=3 chat=3"
      ;;
    single)
      bin=$(chat_bin) || { echo "cluster.sh: no pomelo-chat in $build" >&2; exit 1; }
      "$bin" --host 127.0.0.1 --gate-port $((base + 14)) --port $((base + 50)) \
        >"$logdir/single.log" 2>&1 &
      wait_line "$logdir/single.log" "^gate on " 30
      echo "cluster-ready 127.0.0.1:$((base + 14)) connectors=1 chat=1"
      ;;
    *)
      echo "cluster.sh: unknown cluster $name (pomelo, pomelo-nodelay, ours, single)" >&2
      exit 2
      ;;
  esac
  # Until the driver kills the process group (or one of the servers exits).
  wait -n || true
  echo "cluster.sh: $name: a server exited" >&2
  exit 1
}

if [ "${1:-}" = up ]; then
  up "${2:?up NAME}"
  exit
fi

# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------
if ! command -v "$node" >/dev/null 2>&1; then
  echo "cluster.sh: node not found" >&2
  exit 77
fi
if [ ! -d "$root/tests/peers/node_modules/pomelo-protocol" ]; then
  echo "cluster.sh: run npm ci in tests/peers first (the driver's pomelo-protocol)" >&2
  exit 77
fi
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root" --buildtype=release -Dtests=false -Dexamples=true -Dbench=false \
    -Dpeer_tests=disabled
fi
ninja -C "$build" >/dev/null
bin=$(chat_bin) || { echo "cluster.sh: no pomelo-chat built in $build" >&2; exit 1; }

# Cluster mode: without it, `--role` is a usage error (status 2).
has_cluster=1
probe_status=0
timeout 3 "$bin" --role chat --id probe --nats nats://127.0.0.1:1 >/dev/null 2>&1 ||
  probe_status=$?
if [ "$probe_status" = 2 ]; then
  has_cluster=0
fi
if [ -n "${CLUSTERS:-}" ]; then
  clusters=$CLUSTERS
elif [ "$has_cluster" = 1 ]; then
  clusters="pomelo-nodelay ours pomelo"
else
  clusters="pomelo-nodelay single pomelo"
  echo "(pomelo-chat has no cluster mode in this build: single-process pomelo-chat instead)"
fi
if [[ " $clusters " == *" pomelo"* ]] && [ ! -d "$app/node_modules/pomelo" ]; then
  echo "cluster.sh: run npm ci in bench/peers/chatofpomelo first (the real cluster)" >&2
  exit 77
fi

logs=$(mktemp -d -t pomelo-cluster-logs.XXXXXX)
echo
echo "== Machine =="
echo "date:   $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //') x $(nproc)" \
  "(shared by every server and the driver)"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (1, 5, 15 min, before the run)"
echo "kernel: $(uname -sr)"
echo "cc:     $(sed -n 's/^C compiler for the host machine: //p' "$build/meson-logs/meson-log.txt" |
  tail -1)"
echo "node:   $("$node" --version); pomelo 2.2.7; nats-server: $("$nats_server" --version 2>&1 |
  head -1)"
echo "logs:   $logs"

args=(--rounds "${ROUNDS:-3}" --transport "${TRANSPORT:-tcp}")
for c in $clusters; do
  args+=(--cluster "$c=CLUSTER_LOG_DIR=$logs/\$\$ BUILD_DIR=$build NODE=$node bash $here/cluster.sh up $c")
done
if [[ " $clusters " == *" ours "* ]]; then
  args+=(--ratio-of ours)
elif [[ " $clusters " == *" single "* ]]; then
  args+=(--ratio-of single)
fi
if [ -n "${CLUSTER_JSON:-}" ]; then
  args+=(--json "$CLUSTER_JSON")
fi
echo
# shellcheck disable=SC2086
exec "$node" "$here/cluster.js" "${args[@]}" ${CLUSTER_ARGS:-}
