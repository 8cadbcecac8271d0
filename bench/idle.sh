#!/usr/bin/env bash
# bench/idle.sh: the cost of idle connections, pomelo-echo next to the real pomelo 2.2.7 server,
# on this machine in one run (docs/bench.md, "Idle connections"). For each server and each
# transport (raw TCP, WebSocket), bench-idle (bench/idle.c) opens N handshaken client
# connections that then only exchange heartbeats (3 s on both servers) for D seconds, and reads
# the server's CPU time and resident memory from /proc. Every run gets a fresh server; the
# servers alternate run by run (the order flips every repetition); the summary is the median of
# R repetitions. Nothing here asserts on time. About 6 minutes with the defaults.
#
#   bash bench/idle.sh
#
# Environment: BUILD_DIR (default build-bench, the release build of bench/run.sh; examples are
# turned on in it for pomelo-echo), IDLE_N (N, default 5000), IDLE_SECONDS (D, default 20),
# IDLE_REPS (R, default 3), IDLE_RAMP (seconds over which the N connections start, default 3 =
# the heartbeat interval, so that their heartbeats are spread evenly over it; 0 = as fast as
# they go, heartbeats bunched), SERVERS (default "echo real"), TRANSPORTS (default "tcp ws"),
# NODE (default node). The real server needs `npm ci` in tests/peers/pomelo-server; without it only
# pomelo-echo runs.
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
out=$(mktemp -d)
pgroups=() # process groups this script started (pomelo-echo, timeout's, the pomelo master)

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
ninja -C "$build" bench/bench-idle examples/pomelo-echo
idle_bin=$build/bench/bench-idle
echo_bin=$build/examples/pomelo-echo

# Both servers and the generator hold N sockets each.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((n + 64)) ]; then
  echo "idle.sh: N=$n needs $((n + 64)) file descriptors, the hard limit is $(ulimit -n)" >&2
  exit 1
fi

have_real=0
case " $servers " in
*" real "*)
  if ! command -v "$node" >/dev/null 2>&1; then
    echo "(node not found: pomelo-echo only)"
  elif [ ! -f "$root/tests/peers/pomelo-server/node_modules/pomelo/package.json" ]; then
    echo "(pomelo 2.2.7 not installed: run npm ci in tests/peers/pomelo-server; pomelo-echo only)"
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

run_echo() {
  local transport=$1 pid port="" status=0 flag=""
  [ "$transport" = ws ] && flag=--ws
  echo
  echo "== pomelo-echo, $transport =="
  : >"$out/echo.out"
  # setsid: its own process group (a script's background jobs stay in the script's group, so
  # setsid needs no fork and $! is the server).
  setsid "$echo_bin" --host 127.0.0.1 --port 0 --heartbeat "$heartbeat" \
    >"$out/echo.out" 2>"$out/echo.err" </dev/null &
  pid=$!
  pgroups+=("$pid")
  for _ in $(seq 1 100); do
    port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$out/echo.out")
    [ -n "$port" ] && break
    sleep 0.05
  done
  if [ -z "$port" ]; then
    echo "pomelo-echo did not start:"
    cat "$out/echo.err"
    exit 1
  fi
  run_waiting timeout -k 5 "$run_limit" "$idle_bin" --host 127.0.0.1 --port "$port" $flag \
    -n "$n" --seconds "$secs" --ramp "$ramp" --server-pid "$pid" >"$out/run" 2>&1
  grep -v '^@' "$out/run" || true
  record echo "$transport" "$out/run" "$status"
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
      echo) run_echo "$transport" ;;
      real) if [ "$have_real" = 1 ]; then run_real "$transport"; fi ;;
      *) echo "idle.sh: unknown server $server" >&2; exit 2 ;;
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
    rss[k, c[k]] = f["rss_kib_per_conn"] + 0
    sys[k, c[k]] = f["server_sys_cores"] + 0
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
function ratio(a, b) { return (a < 0 || b <= 0) ? "-" : sprintf("%.2f", a / b) }
END {
  name["echo"] = "pomelo-echo"; name["real"] = "pomelo 2.2.7"
  printf "%-12s %-9s %5s %9s %17s %7s %8s %15s %4s %6s %7s %6s\n", "server", "transport", "N",
         "CPU cores", "(min..max)", "system", "KiB/conn", "(min..max)", "lost", "failed",
         "gen CPU", "other"
  nt = split(transports, T, " ")
  for (t = 1; t <= nt; t++) {
    for (s = 1; s <= 2; s++) {
      sv = s == 1 ? "echo" : "real"
      k = sv " " T[t]
      if (!runs[k]) continue
      mc[k] = med(cpu, k); cl = lo[k]; ch = hi[k]
      mr[k] = med(rss, k); rl = lo[k]; rh = hi[k]
      ms = med(sys, k)
      printf "%-12s %-9s %5s %9s %17s %7s %8s %15s %4d %6d %7s %6s\n", name[sv],
             T[t] == "ws" ? "WebSocket" : "TCP", n,
             num(mc[k], "%.4f"), c[k] ? sprintf("(%.4f..%.4f)", cl, ch) : "-", num(ms, "%.4f"),
             num(mr[k], "%.2f"), c[k] ? sprintf("(%.2f..%.2f)", rl, rh) : "-",
             lost[k], failed[k], c[k] ? sprintf("%.3f", self[k]) : "-",
             c[k] ? sprintf("%.3f", other[k]) : "-"
    }
  }
  print ""
  printf "%-9s %18s %18s\n", "transport", "CPU ours/real", "memory ours/real"
  for (t = 1; t <= nt; t++) {
    e = "echo " T[t]; r = "real " T[t]
    if (!runs[e] || !runs[r]) continue
    printf "%-9s %18s %18s\n", T[t] == "ws" ? "WebSocket" : "TCP", ratio(mc[e], mc[r]), ratio(mr[e], mr[r])
  }
  print ""
  print "CPU cores = the server'"'"'s utime + stime over the idle period / its length (for pomelo"
  print "2.2.7 summed over its process group: master + connector); system = the stime part;"
  print "KiB/conn = (VmRSS at the end - VmRSS before the first connect) / N; lost = connections"
  print "closed after their handshake (must be 0); gen CPU = the generator'"'"'s own CPU, the largest"
  print "of the runs (it shares the machine with the server); other = the CPU the rest of the"
  print "machine used meanwhile (/proc/stat), the largest of the runs."
  if (busy) print "WARNING: something else used more than 0.2 core during some runs: figures distorted."
}' "$out/all"
echo
echo "One noisy machine, generator and server on the same cores: compare within the run."
if awk '{ for (i = 3; i <= NF; i++) if ($i ~ /^(lost|lost_before)=[1-9]/ || $i == "failed=1") bad = 1 }
        END { exit bad ? 0 : 1 }' "$out/all"; then
  echo "Some runs lost or failed connections (see above)."
  exit 1
fi
