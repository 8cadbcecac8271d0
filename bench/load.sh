#!/usr/bin/env bash
# bench/load.sh: pomelo-chat next to the real chatofpomelo on pomelo 2.2.7, driven by the same C
# load generator (bench-load, bench/load.c), on this machine in one run (docs/performance.md).
# Servers are started by `bench/cluster.sh up NAME` in a process group of their own (PGID
# recorded, stopped by it, checked gone), one at a time, in an order that alternates round by
# round. After each start, a 3 s warm-up run that is not recorded (node's JIT). For each server
# and round:
#   chat-tcp, chat-ws   100 users in one room, 4 senders with 4 sends in flight (closed loop),
#                       LOAD_SECONDS s (the first 2 not measured): pushes/s, request and echo
#                       latency, server CPU per million pushes, generator CPU;
#   chat-tcp-w16        the same over TCP with 16 in flight per sender (throughput);
#   hs-tcp, hs-ws       50 clients at a time (2 generator processes) connecting to a connector,
#                       handshaking (no cached dictionary or protos: a first visit) and closing:
#                       handshakes/s, server CPU per handshake; hs-tcp-cached: the same with
#                       clients that send the versions they cached (a returning visitor);
#   users-N             (first round only) N users in one room, N in LOAD_USERS (pushes/s
#                       against room size).
# Then, once per server, an open-loop run at the best rate the real server sustained (the
# highest sends/s of its chat-tcp runs, median over the rounds): echo latency without
# coordinated omission, for the latency plot.
# Every run checks exactly-once delivery (bench-load exits 1 on a loss, duplicate or reorder);
# a failed run stops the script with status 1. Nothing here asserts on time.
#
#   bash bench/load.sh                  # LOAD_SERVERS, LOAD_ROUNDS rounds (about 5 minutes)
#
# Output: everything on stdout; the figures as "@ load SERVER:TEST:ROUND KEY VALUE" lines in
# $LOAD_OUT/load.txt, the open-loop latency distributions in $LOAD_OUT/latency.tsv (series,
# percentile, ms), for bench/report.py.
#
# Environment: LOAD_SERVERS (default "pomelo-nodelay single pomelo"; also "ours", the cluster
# over NATS), LOAD_ROUNDS (3), LOAD_SECONDS (7), LOAD_USERS (sweep, default "10 30 300";
# each user entering a room pushes onAdd to those already in: N users cost N^2/2 pushes to log in),
# LOAD_OUT (a directory for the figures; default a temporary one, printed), BUILD_DIR (a
# release build with examples and benches, default build-bench; configured if missing), NODE.
# The real server needs `npm ci` in bench/peers/chatofpomelo (and tests/peers/pomelo-server for
# its shim); without it only pomelo-chat runs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD_DIR:-$root/build-bench}
node=${NODE:-node}
servers=${LOAD_SERVERS:-pomelo-nodelay single pomelo}
rounds=${LOAD_ROUNDS:-3}
secs=${LOAD_SECONDS:-7}
sweep=${LOAD_USERS:-10 30 300}
out=${LOAD_OUT:-$(mktemp -d -t pomelo-load.XXXXXX)}
mkdir -p "$out"
pgid=""

stop_server() {
  local i
  [ -n "$pgid" ] || return 0
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for i in $(seq 1 50); do
    if ! pgrep -g "$pgid" >/dev/null 2>&1; then
      pgid=""
      return 0
    fi
    sleep 0.1
  done
  kill -KILL -- "-$pgid" 2>/dev/null || true
  sleep 0.2
  if pgrep -g "$pgid" >/dev/null 2>&1; then
    echo "load.sh: processes of group $pgid survived SIGKILL" >&2
  fi
  pgid=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root" --buildtype=release -Dtests=false -Dexamples=true -Dbench=true \
    -Dpeer_tests=disabled >/dev/null
else
  meson configure "$build" -Dbuildtype=release -Dexamples=true -Dbench=true >/dev/null
fi
ninja -C "$build" bench/bench-load >/dev/null
ninja -C "$build" >/dev/null
load=$build/bench/bench-load

if [[ " $servers " == *" pomelo"* ]] && [ ! -d "$here/peers/chatofpomelo/node_modules/pomelo" ]; then
  echo "load.sh: bench/peers/chatofpomelo has no node_modules (npm ci there): pomelo-chat only"
  servers=$(echo " $servers " | sed 's/ pomelo-nodelay / /; s/ pomelo / /')
fi

# start_server NAME: starts it in its own process group; sets pgid, gate and connector.
start_server() {
  local name=$1 i pid line
  : >"$out/up.out"
  setsid env CLUSTER_LOG_DIR="$out/logs/$name" BUILD_DIR="$build" NODE="$node" \
    bash "$here/cluster.sh" up "$name" >"$out/up.out" 2>>"$out/up.err" &
  pid=$!
  # setsid makes the background job ($pid, not a group leader here, so it does not fork) the
  # leader of a new process group: wait until it is one, so that a kill of the group can never
  # reach this script's own.
  pgid=""
  for i in $(seq 1 100); do
    if [ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" = "$pid" ]; then
      pgid=$pid
      break
    fi
    sleep 0.02
  done
  if [ -z "$pgid" ]; then
    kill -KILL "$pid" 2>/dev/null || true
    echo "load.sh: $name did not get a process group of its own" >&2
    exit 1
  fi
  for i in $(seq 1 900); do
    line=$(grep -m1 '^cluster-ready ' "$out/up.out" || true)
    [ -n "$line" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "load.sh: $name did not start:" >&2
      tail -20 "$out/up.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  [ -n "$line" ] || { echo "load.sh: $name not ready after 90 s" >&2; exit 1; }
  gate=$(echo "$line" | awk '{print $2}')
  # cluster.sh's layout: gate at B+14, the first connector at B+50
  connector=${gate%:*}:$((${gate##*:} + 36))
  # Until a chat server answers (the real one's chat servers come up after the connectors).
  for i in $(seq 1 60); do
    if "$load" --gate "$gate" --users 6 --rooms 3 --senders 1 --window 1 --seconds 0.3 \
      --warmup 0 --label probe >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  echo "load.sh: $name never answered a chat" >&2
  exit 1
}

# warm_up: a few seconds of chat, not recorded (node's JIT needs them: a fresh pomelo runs its
# first thousand requests several times slower).
warm_up() {
  "$load" --gate "$gate" --users 100 --rooms 1 --senders 4 --window 4 --seconds 3 --warmup 1 \
    --label warm-up >/dev/null 2>&1 || {
    echo "load.sh: the warm-up run failed" >&2
    exit 1
  }
}

# run LABEL ARGS...: one bench-load run against the server that is up. A failed check stops
# the script when the server is pomelo-chat; the real server's failures (it closing clients'
# connections under overload, say) are recorded as "failed" and the script goes on.
run() {
  local label=$1 status=0
  shift
  echo
  "$load" --server-pgid "$pgid" --label "$label" "$@" >"$out/last" 2>&1 || status=$?
  grep -v '^@' "$out/last" || true
  if [ "$status" != 0 ]; then
    case $label in
      pomelo*)
        echo "load.sh: $label failed (status $status): recorded, going on"
        echo "@ load $label failed 1" >>"$out/load.txt"
        return 0
        ;;
    esac
    echo "load.sh: $label failed (status $status)" >&2
    exit 1
  fi
  grep '^@' "$out/last" >>"$out/load.txt" || true
}

echo "== Machine =="
echo "date:   $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') x $(nproc)" \
  "(shared by the server and the generator)"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min, before the run)"
echo "kernel: $(uname -sr); node $("$node" --version 2>/dev/null || echo none)"
echo "figures: $out"
: >"$out/load.txt"
: >"$out/latency.tsv"

chat=(--users 100 --rooms 1 --senders 4 --window 4 --seconds "$secs" --warmup 2 --procs 1)
read -r -a order <<<"$servers"
for round in $(seq 1 "$rounds"); do
  echo
  echo "######## round $round of $rounds: ${order[*]} ########"
  for name in "${order[@]}"; do
    echo
    echo "=== $name (round $round)"
    start_server "$name"
    warm_up
    run "$name:chat-tcp:$round" --gate "$gate" "${chat[@]}" --transport tcp
    run "$name:chat-ws:$round" --gate "$gate" "${chat[@]}" --transport ws
    run "$name:chat-tcp-w16:$round" --gate "$gate" "${chat[@]}" --transport tcp --window 16
    hs=(--handshakes --connect "$connector" --concurrency 50 --procs 2 --seconds 4 --warmup 1)
    run "$name:hs-tcp:$round" "${hs[@]}" --transport tcp
    run "$name:hs-tcp-cached:$round" "${hs[@]}" --transport tcp --cached
    run "$name:hs-ws:$round" "${hs[@]}" --transport ws
    if [ "$round" = 1 ]; then
      for n in $sweep; do
        run "$name:users-$n:$round" --gate "$gate" --users "$n" --rooms 1 --senders 4 \
          --window 4 --seconds 6 --warmup 2 --transport tcp --login-window 50
      done
    fi
    stop_server
  done
  # alternate: reverse the order for the next round
  rev=()
  for ((i = ${#order[@]} - 1; i >= 0; i--)); do
    rev+=("${order[i]}")
  done
  order=("${rev[@]}")
done

# The real server's best sustained rate: the highest median sends/s of its chat-tcp runs.
rate=$(awk '$3 ~ /^pomelo(-nodelay)?:chat-tcp:/ && $4 == "sends_per_s" {
  split($3, p, ":"); n[p[1]]++; v[p[1], n[p[1]]] = $5
} END {
  best = 0
  for (s in n) {
    m = n[s]
    for (i = 1; i <= m; i++) a[i] = v[s, i]
    for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j > 0 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    med = m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    if (med > best) best = med
  }
  printf "%d", best
}' "$out/load.txt")
if [ "${rate:-0}" -le 0 ]; then
  rate=1000 # no real server ran: a fixed rate
  echo
  echo "(no real server: the open-loop runs use $rate sends/s)"
fi
echo
echo "######## open loop at $rate sends/s (the real server's best sustained rate) ########"
for name in "${order[@]}"; do
  echo
  echo "=== $name (open loop)"
  start_server "$name"
  warm_up
  run "$name:open:1" --gate "$gate" --users 100 --rooms 1 --senders 4 --rate "$rate" \
    --seconds "$secs" --warmup 2 --transport tcp --hist "$out/latency.tsv"
  stop_server
done
echo "@ load all open_rate $rate" >>"$out/load.txt"
echo
echo "load.sh: figures in $out/load.txt and $out/latency.tsv"
