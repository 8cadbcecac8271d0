#!/usr/bin/env bash
# bench/idle.sh: the cost of idle connections, pomelo-echo and pomelo-chat next to the real
# pomelo 2.2.7 server, on this machine in one run (docs/bench.md, "Idle connections"). For each
# server and each transport (raw TCP, WebSocket), bench-idle (bench/idle.c) opens N handshaken
# client connections that then only exchange heartbeats (3 s on every server) for D seconds, and
# reads the server's CPU time and resident memory from /proc. Every run gets a fresh server; the
# servers alternate run by run (the order flips every repetition); the summary is the median of
# R repetitions. Nothing here asserts on time. About 6 minutes with the defaults; about 2 minutes
# for IDLE_N=10000 IDLE_REPS=1 IDLE_SECONDS=10 SERVERS="chat real".
#
#   bash bench/idle.sh
#   IDLE_N=10000 IDLE_REPS=1 IDLE_SECONDS=10 SERVERS="chat real" bash bench/idle.sh
#
# Servers (SERVERS, any of them, in any order):
#   echo  examples/echo/pomelo-echo --port 0 --heartbeat 3, in a process group of its own;
#   chat  examples/chat/pomelo-chat --gate-port 0 --port 0: gate, connector and chat server in
#         one process (the in-process bus), in a process group of its own; the clients go to the
#         connector (heartbeat 3 s), whose one port speaks raw TCP and WebSocket (transport AUTO);
#         the gate is not used;
#   real  the pomelo 2.2.7 template app through tests/peers/pomelo-server/start.js (master +
#         connector, hybrid connector, heartbeat 3 s), measured over its whole process group.
# pomelo-echo and pomelo-chat are stopped by their PID (SIGTERM, a graceful stop), then their
# process group gets SIGKILL; start.js kills the pomelo group itself; on exit every group this
# script started gets SIGTERM then SIGKILL.
#
# Environment: BUILD_DIR (default build-bench, the release build of bench/micro.sh and bench/run.sh; examples are
# turned on in it for pomelo-echo and pomelo-chat), IDLE_N (N, default 5000), IDLE_SECONDS (D,
# default 20), IDLE_REPS (R, default 3), IDLE_RAMP (seconds over which the N connections start,
# default 3 = the heartbeat interval, so that their heartbeats are spread evenly over it; 0 = as
# fast as they go, heartbeats bunched), SERVERS (default "echo real"; "echo chat real" for all
# three), TRANSPORTS (default "tcp ws"), NODE (default node). The real server needs `npm ci` in
# tests/peers/pomelo-server; without it, it is skipped.
#
# Limits: each server and the generator hold N sockets, so the soft descriptor limit is raised
# to the hard one here (node, pomelo-echo and pomelo-chat inherit it; bench-idle and the two C
# servers raise their own as well) and must be at least N + 64; N = 10,000 needs 10,064, the
# hard limit of 20,000 of the usual machine is enough. The generator binds its sockets to
# 127.0.0.1 .. 127.0.0.K (K = 4 unless N needs more), each with the whole ephemeral port range
# (32768-60999: 28,232 ports), so N = 10,000 uses 2,500 ports per source address.
#
# Output: the runs, then a summary table (medians over the repetitions) and, for another
# script, one line per server and transport that ran (the lines bench-idle itself prints are
# not shown):
#   @ idle server=S transport=T n=N runs=R ok=K rss_bytes_per_conn=B cpu_us_per_conn_per_s=U
#          server_cores=C server_sys_cores=Y rss_kib_per_conn=M lost=L failed=F
#          self_cores_max=G other_cores_max=O
# (on one line) with S echo|chat|real, T tcp|ws; K = the runs with all N handshakes done;
# B = median of (VmRSS at the end - VmRSS before the first connect) x 1024 / N, in bytes (for
# real: summed over master + connector); C = median server CPU over the idle period, in cores
# (utime + stime / wall time), Y its system part; U = C x 1e6 / N, the CPU microseconds each
# idle connection costs the server per second; M = B / 1024; L = connections lost after their
# handshake, F = failed runs, both summed over the runs; G, O = the largest generator CPU and
# CPU of the rest of the machine, in cores. A figure with no successful run is "nan".
# Exit status 1 when any run failed or lost a connection.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD_DIR:-$root/build-bench}
n=${IDLE_N:-5000}
secs=${IDLE_SECONDS:-20}
reps=${IDLE_REPS:-3}
ramp=${IDLE_RAMP:-3}
servers=${SERVERS:-echo real}
transports=${TRANSPORTS:-tcp ws}
node=${NODE:-node}
heartbeat=3 # pomelo-echo's; the template app of the real server has heartbeat: 3 too
t_begin=$SECONDS
for server in $servers; do
  case $server in
  echo | chat | real) ;;
  *) echo "idle.sh: unknown server $server (echo, chat, real)" >&2; exit 2 ;;
  esac
done
for transport in $transports; do
  case $transport in
  tcp | ws) ;;
  *) echo "idle.sh: unknown transport $transport (tcp, ws)" >&2; exit 2 ;;
  esac
done
out=$(mktemp -d)
pgroups=() # process groups this script started (pomelo-echo/-chat, timeout's, the pomelo master)

# Stops everything this script started: SIGTERM first (timeout passes it on to start.js, which
# then kills the pomelo group it made), then SIGKILL to every group, the pomelo one included.
cleanup() {
  local pg
  if [ -f "$out/run" ]; then
    pg=$(sed -n 's/.*server pgid \([0-9][0-9]*\) .*/\1/p' "$out/run" | head -1)
    [ -n "$pg" ] && pgroups+=("$pg")
  fi
  for pg in "${pgroups[@]+"${pgroups[@]}"}"; do
    kill -TERM -- "-$pg" 2>/dev/null || true
  done
  sleep 0.5
  for pg in "${pgroups[@]+"${pgroups[@]}"}"; do
    kill -KILL -- "-$pg" 2>/dev/null || true
  done
  rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root" --buildtype=release -Dtests=false -Dexamples=true -Dbench=true
else
  meson configure "$build" -Dbuildtype=release -Dexamples=true -Dbench=true >/dev/null
fi
ninja -C "$build" bench/bench-idle examples/pomelo-echo examples/pomelo-chat
idle_bin=$build/bench/bench-idle
echo_bin=$build/examples/pomelo-echo
chat_bin=$build/examples/pomelo-chat

# The server and the generator hold N sockets each (and node, which inherits this limit, does
# not lower it).
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((n + 64)) ]; then
  echo "idle.sh: N=$n needs $((n + 64)) file descriptors, the hard limit is $(ulimit -n)" >&2
  exit 1
fi

have_real=0
case " $servers " in
*" real "*)
  if ! command -v "$node" >/dev/null 2>&1; then
    echo "(node not found: the real server is skipped)"
  elif [ ! -f "$root/tests/peers/pomelo-server/node_modules/pomelo/package.json" ]; then
    echo "(pomelo 2.2.7 not installed: run npm ci in tests/peers/pomelo-server; the real server" \
      "is skipped)"
  else
    have_real=1
  fi
  ;;
esac

echo
echo "== Machine =="
echo "date:   $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //') x $(nproc)"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (1, 5, 15 min, before the run)"
echo "kernel: $(uname -sr)"
if [ "$have_real" = 1 ]; then
  echo "node:   $("$node" --version)"
fi
echo "runs:   N=$n, idle ${secs} s, ramp ${ramp} s, heartbeat ${heartbeat} s, $reps repetitions"
echo "fds:    $(ulimit -n) per process (soft = hard); ports $(tr -s '\t ' - </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo '?') per source address"

# Bounds: the generator's own connect limit is 120 s after the ramp.
run_limit=$((secs + ramp + 180))

# Runs `timeout ...` in the background and waits for it, so that a signal to this script is
# handled at once (bash runs traps only between foreground commands); timeout leads a process
# group of its own, which cleanup() can stop. Sets the caller's `status`.
run_waiting() {
  local p
  "$@" &
  p=$!
  pgroups+=("$p")
  status=0
  wait "$p" || status=$?
}

# The figures of one run ("@ idle" line) go to $out/all as "SERVER TRANSPORT key=value...".
record() {
  local server=$1 transport=$2 file=$3 status=$4 line
  line=$(grep '^@ idle' "$file" | tail -1 || true)
  if [ -z "$line" ]; then
    echo "$server $transport failed=1 status=$status" >>"$out/all"
  else
    echo "$server $transport ${line#@ idle } status=$status" >>"$out/all"
  fi
}

# pomelo-echo or pomelo-chat (our servers): started in a process group of its own, its PID
# given to bench-idle, stopped by that PID.
run_ours() {
  local server=$1 transport=$2 pid port="" status=0 flag="" title bin pattern
  local -a args
  [ "$transport" = ws ] && flag=--ws
  case $server in
  echo)
    title=pomelo-echo bin=$echo_bin
    args=(--host 127.0.0.1 --port 0 --heartbeat "$heartbeat")
    pattern='s/^listening on .*:\([0-9][0-9]*\)$/\1/p'
    ;;
  chat)
    # The connector's port takes raw TCP and WebSocket (the first bytes tell); heartbeat 3 s.
    title="pomelo-chat (connector)" bin=$chat_bin
    args=(--host 127.0.0.1 --gate-port 0 --port 0)
    pattern='s/^gate on .*, connector on .*:\([0-9][0-9]*\)$/\1/p'
    ;;
  esac
  echo
  echo "== $title, $transport =="
  : >"$out/$server.out"
  # setsid: its own process group (a script's background jobs stay in the script's group, so
  # setsid needs no fork and $! is the server).
  setsid "$bin" "${args[@]}" >"$out/$server.out" 2>"$out/$server.err" </dev/null &
  pid=$!
  pgroups+=("$pid")
  for _ in $(seq 1 100); do
    port=$(sed -n "$pattern" "$out/$server.out")
    [ -n "$port" ] && break
    sleep 0.05
  done
  if [ -z "$port" ]; then
    echo "$title did not start:"
    cat "$out/$server.err"
    exit 1
  fi
  run_waiting timeout -k 5 "$run_limit" "$idle_bin" --host 127.0.0.1 --port "$port" $flag \
    -n "$n" --seconds "$secs" --ramp "$ramp" --server-pid "$pid" >"$out/run" 2>&1
  grep -v '^@' "$out/run" || true
  record "$server" "$transport" "$out/run" "$status"
  # SIGTERM: a graceful stop (nothing is left connected); then the group, whatever remains.
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

run_real() {
  local transport=$1 status=0 flag="" pg
  [ "$transport" = ws ] && flag=--ws
  echo
  echo "== pomelo 2.2.7, $transport =="
  # start.js starts the template app in a process group of its own (POMELO_PGID), runs the
  # command, then kills that group (also on SIGTERM from timeout); its shim makes the servers
  # exit by themselves if start.js vanishes.
  # shellcheck disable=SC2016 # the inner shell expands start.js's variables
  run_waiting timeout -k 5 $((run_limit + 60)) "$node" "$root/tests/peers/pomelo-server/start.js" \
    -- bash -c 'exec "$0" --host "$POMELO_HOST" --port "$POMELO_PORT" \
      --server-pgid "$POMELO_PGID" "$@"' \
    "$idle_bin" $flag -n "$n" --seconds "$secs" --ramp "$ramp" >"$out/run" 2>&1
  pg=$(sed -n 's/.*server pgid \([0-9][0-9]*\) .*/\1/p' "$out/run" | head -1)
  if [ -n "$pg" ]; then
    pgroups+=("$pg")
    kill -KILL -- "-$pg" 2>/dev/null || true # normally gone already
  fi
  grep -v '^@' "$out/run" | grep -v '^pomelo: master pid' || true
  record real "$transport" "$out/run" "$status"
}

: >"$out/all"
for rep in $(seq 1 "$reps"); do
  echo
  echo "######## repetition $rep of $reps ########"
  for transport in $transports; do
    order=$servers
    if [ $((rep % 2)) = 0 ]; then
      order=$(echo "$servers" | awk '{ for (i = NF; i > 0; i--) printf "%s%s", $i, (i > 1 ? " " : "") }')
    fi
    for server in $order; do
      case $server in
      echo | chat) run_ours "$server" "$transport" ;;
      real) if [ "$have_real" = 1 ]; then run_real "$transport"; fi ;;
      esac
    done
  done
done

echo
echo "== Summary (medians of $reps; N=$n, idle ${secs} s, heartbeat ${heartbeat} s, ramp ${ramp} s) =="
awk -v n="$n" -v transports="$transports" '
{
  k = $1 " " $2
  runs[k]++
  for (i = 3; i <= NF; i++) {
    split($i, kv, "=")
    f[kv[1]] = kv[2]
  }
  if (f["failed"] == 1 || f["handshakes"] != n) {
    failed[k]++
  } else {
    c[k]++
    cpu[k, c[k]] = f["server_cores"] + 0
    sys[k, c[k]] = f["server_sys_cores"] + 0
    rss[k, c[k]] = (f["rss_end_kib"] - f["rss_base_kib"]) * 1024 / n # bytes per connection
    if (f["self_cores"] + 0 > self[k]) self[k] = f["self_cores"] + 0
    if (f["other_cores"] + 0 > other[k]) other[k] = f["other_cores"] + 0
    if (f["other_cores"] + 0 > 0.2) busy = 1
  }
  lost[k] += f["lost"] + f["lost_before"]
  delete f
}
function med(a, k,    i, j, t, m, v) {
  m = c[k]
  if (!m) return -1
  for (i = 1; i <= m; i++) v[i] = a[k, i]
  for (i = 2; i <= m; i++) {
    t = v[i]
    for (j = i - 1; j > 0 && v[j] > t; j--) v[j + 1] = v[j]
    v[j + 1] = t
  }
  lo[k] = v[1]; hi[k] = v[m]
  return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
function num(x, fmt) { return x < 0 ? "-" : sprintf(fmt, x) }
function mnum(x, fmt) { return x < 0 ? "nan" : sprintf(fmt, x) }
function ratio(a, b) { return (a < 0 || b <= 0) ? "-" : sprintf("%.3f", a / b) }
function tname(t) { return t == "ws" ? "WebSocket" : "TCP" }
END {
  name["echo"] = "pomelo-echo"; name["chat"] = "pomelo-chat"; name["real"] = "pomelo 2.2.7"
  ns = split("echo chat real", S, " ")
  printf "%-12s %-9s %6s %9s %17s %7s %10s %9s %17s %8s %4s %6s %7s %6s\n", "server",
         "transport", "N", "CPU cores", "(min..max)", "system", "us/conn/s", "B/conn",
         "(min..max)", "KiB/conn", "lost", "failed", "gen CPU", "other"
  nt = split(transports, T, " ")
  for (t = 1; t <= nt; t++) {
    for (s = 1; s <= ns; s++) {
      k = S[s] " " T[t]
      if (!runs[k]) continue
      mc[k] = med(cpu, k); cl = lo[k]; ch = hi[k]
      mr[k] = med(rss, k); rl = lo[k]; rh = hi[k]
      ms[k] = med(sys, k)
      printf "%-12s %-9s %6s %9s %17s %7s %10s %9s %17s %8s %4d %6d %7s %6s\n", name[S[s]],
             tname(T[t]), n, num(mc[k], "%.4f"),
             c[k] ? sprintf("(%.4f..%.4f)", cl, ch) : "-", num(ms[k], "%.4f"),
             mc[k] < 0 ? "-" : sprintf("%.2f", mc[k] * 1e6 / n), num(mr[k], "%.0f"),
             c[k] ? sprintf("(%.0f..%.0f)", rl, rh) : "-",
             mr[k] < 0 ? "-" : sprintf("%.2f", mr[k] / 1024), lost[k], failed[k],
             c[k] ? sprintf("%.3f", self[k]) : "-", c[k] ? sprintf("%.3f", other[k]) : "-"
    }
  }
  hdr = 0
  for (s = 1; s <= 2; s++) {
    for (t = 1; t <= nt; t++) {
      o = S[s] " " T[t]; r = "real " T[t]
      if (!runs[o] || !runs[r]) continue
      if (!hdr++) {
        print ""
        printf "%-27s %-9s %9s %9s\n", "ours / real", "transport", "CPU", "memory"
      }
      printf "%-27s %-9s %9s %9s\n", name[S[s]] " / " name["real"], tname(T[t]),
             ratio(mc[o], mc[r]), ratio(mr[o], mr[r])
    }
  }
  print ""
  print "CPU cores = the server'"'"'s utime + stime over the idle period / its length (for pomelo"
  print "2.2.7 summed over its process group: master + connector); system = the stime part;"
  print "us/conn/s = CPU cores x 1e6 / N: the server'"'"'s CPU microseconds per idle connection per"
  print "second; B/conn = (VmRSS at the end - VmRSS before the first connect) x 1024 / N, in bytes"
  print "(KiB/conn the same in KiB); lost = connections closed after their handshake (must be 0);"
  print "gen CPU = the generator'"'"'s own CPU, the largest of the runs (it shares the machine with the"
  print "server); other = the CPU the rest of the machine used meanwhile (/proc/stat), the largest"
  print "of the runs."
  if (busy) print "WARNING: something else used more than 0.2 core during some runs: CPU figures distorted."
  print ""
  for (t = 1; t <= nt; t++) {
    for (s = 1; s <= ns; s++) {
      k = S[s] " " T[t]
      if (!runs[k]) continue
      printf "@ idle server=%s transport=%s n=%d runs=%d ok=%d rss_bytes_per_conn=%s " \
             "cpu_us_per_conn_per_s=%s server_cores=%s server_sys_cores=%s rss_kib_per_conn=%s " \
             "lost=%d failed=%d self_cores_max=%s other_cores_max=%s\n",
             S[s], T[t], n, runs[k], c[k] + 0, mnum(mr[k], "%.0f"),
             mc[k] < 0 ? "nan" : sprintf("%.3f", mc[k] * 1e6 / n), mnum(mc[k], "%.4f"),
             mnum(ms[k], "%.4f"), mr[k] < 0 ? "nan" : sprintf("%.3f", mr[k] / 1024), lost[k],
             failed[k], c[k] ? sprintf("%.4f", self[k]) : "nan",
             c[k] ? sprintf("%.4f", other[k]) : "nan"
    }
  }
}' "$out/all"
echo
echo "One noisy machine, generator and server on the same cores: compare within the run."
echo "Total time: $((SECONDS - t_begin)) s."
if awk '{ for (i = 3; i <= NF; i++) if ($i ~ /^(lost|lost_before)=[1-9]/ || $i == "failed=1") bad = 1 }
        END { exit bad ? 0 : 1 }' "$out/all"; then
  echo "Some runs lost or failed connections (see above)."
  exit 1
fi
