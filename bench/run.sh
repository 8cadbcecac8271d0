#!/usr/bin/env bash
# bench/run.sh: the end-to-end benchmarks, about 10 minutes on 2 cores, and docs/performance.md
# written from them (tables, machine details, the commands to rerun) with its SVG plots
# (docs/perf-latency.svg, docs/perf-users.svg). Nothing here asserts on time; a correctness
# failure in any run (a push lost or doubled, a login that failed) stops it with status 1.
#
#   bash bench/run.sh
#
# In order, in a release build of its own (BUILD_DIR, default build-bench; configured if
# missing, with the examples and benchmarks):
#   1. bench/load.sh: pomelo-chat next to the real chatofpomelo on pomelo 2.2.7, stock and with
#      TCP_NODELAY, driven by bench-load (bench/load.c): chat throughput and latency over TCP and
#      WebSocket, handshakes/s, pushes/s against room size, latency at the real server's best
#      sustained rate (LOAD_ROUNDS rounds, default 3, alternating);
#   2. bench/idle.sh: 10,000 idle connections over TCP and WebSocket, pomelo-chat and the real
#      server: resident memory and CPU per connection;
#   3. bench-sessions: a million sessions in one process (memory, heartbeat ticks, a push to all);
#   4. tests/soak.sh: 10,000 connections with churn, slow consumers and flooders;
#   5. bench/report.py: docs/performance.md.
# The microbenchmarks next to node are bench/micro.sh's (docs/bench.md); the cluster over NATS
# next to pomelo-rpc is bench/cluster.sh's (docs/performance-cluster.md).
#
# Environment: BUILD_DIR, NODE, LOAD_ROUNDS, LOAD_SECONDS, LOAD_SERVERS (bench/load.sh), IDLE_N
# (default 10000), OUT (where the figures go, default a temporary directory, kept and printed),
# REPORT (default docs/performance.md; "-" for none), STEPS (default "load idle sessions soak").
# It installs what it needs first (tools/setup.sh, then `npm ci` in bench/peers/chatofpomelo).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD_DIR:-$root/build-bench}
node=${NODE:-node}
out=${OUT:-$(mktemp -d -t pomelo-bench.XXXXXX)}
report=${REPORT:-$root/docs/performance.md}
steps=" ${STEPS:-load idle sessions soak} "
mkdir -p "$out"
start=$SECONDS

# What it needs, from a fresh clone: the toolchain and the test peers (tools/setup.sh: apt and
# npm ci; quick when all is there), and the real chatofpomelo's pomelo 2.2.7.
bash "$root/tools/setup.sh"
if [ ! -d "$here/peers/chatofpomelo/node_modules/pomelo" ]; then
  (cd "$here/peers/chatofpomelo" && npm ci --no-audit --no-fund)
fi

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root" --buildtype=release -Dtests=false -Dexamples=true -Dbench=true \
    -Dpeer_tests=disabled >/dev/null
else
  meson configure "$build" -Dbuildtype=release -Dexamples=true -Dbench=true >/dev/null
fi
ninja -C "$build" >/dev/null

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') x $(nproc) (2 cores here:" \
    "shared by the server and the generator)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "kernel: $(uname -sr); open files per process: $(ulimit -Hn) (hard limit)"
  echo "compiler: $(sed -n 's/^C compiler for the host machine: //p' \
    "$build/meson-logs/meson-log.txt" | tail -1), release build"
  echo "node: $("$node" --version 2>/dev/null || echo none); pomelo 2.2.7 (npm)"
  echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
} >"$out/machine.txt"
echo "== Machine =="
cat "$out/machine.txt"
echo "figures: $out"

if [[ $steps == *" load "* ]]; then
  echo
  echo "######## 1. bench/load.sh ########"
  LOAD_OUT=$out BUILD_DIR=$build NODE=$node bash "$here/load.sh"
fi
if [[ $steps == *" idle "* ]]; then
  echo
  echo "######## 2. bench/idle.sh ########"
  IDLE_N=${IDLE_N:-10000} IDLE_REPS=${IDLE_REPS:-1} IDLE_SECONDS=${IDLE_SECONDS:-10} \
    SERVERS=${SERVERS:-chat real} BUILD_DIR=$build NODE=$node bash "$here/idle.sh" |
    tee "$out/idle.txt"
fi
if [[ $steps == *" sessions "* ]]; then
  echo
  echo "######## 3. bench-sessions ########"
  "$build/bench/bench-sessions" --sessions 1000000 --reps 3 | tee "$out/sessions.txt"
fi
if [[ $steps == *" soak "* ]]; then
  echo
  echo "######## 4. tests/soak.sh ########"
  bash "$root/tests/soak.sh" "$build/examples/pomelo-chat" "$build/bench/bench-load" |
    tee "$out/soak.txt"
fi
echo "run: $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s for: ${steps# }" \
  >>"$out/machine.txt"
if [ "$report" != "-" ]; then
  python3 "$here/report.py" --dir "$out" --out "$report"
  echo
  echo "run.sh: wrote $report (figures in $out)"
fi
