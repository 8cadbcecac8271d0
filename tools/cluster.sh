#!/usr/bin/env bash
# The chat demo as a cluster over NATS (docs/chat.md), on this machine:
#   - nats-server (Debian's package nats-server) on 127.0.0.1:4222;
#   - examples/chat/pomelo-chat, one process per server: the gate on 3014, three connectors on
#     3050, 3051 and 3052, three chat servers (no port of their own), all on that bus;
#   - the chat page, served from examples/chat/web by python3's http.server on 127.0.0.1:3001
#     (as tools/demo.sh serves it).
# Open http://127.0.0.1:3001/ in a few browser tabs: the gate spreads the users over the
# connectors (by crc32 of the name), and they chat across them. Ctrl-C (or SIGTERM) stops every
# process, each by its PID, and checks that none is left.
#
# Builds the project first (tools/setup.sh, then a release build in build-release/, as
# tools/demo.sh does) when the binary is missing. Environment, all optional:
#   HOST (127.0.0.1), GATE_PORT (3014), CONNECTOR_PORTS ("3050 3051 3052": one connector each),
#   CHAT_SERVERS (3), NATS_PORT (4222), PAGE_PORT (3001), ANNOUNCE_MS and TIMEOUT_MS (passed
#   as --announce-ms and --timeout-ms when set), POMELO_CHAT (a pomelo-chat binary to use
#   instead of building one), NATS_SERVER (the nats-server binary), LOG_DIR (where each
#   process's output goes; a new directory under /tmp by default, kept after the end).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

host=${HOST:-127.0.0.1}
gate_port=${GATE_PORT:-3014}
read -r -a connector_ports <<<"${CONNECTOR_PORTS:-3050 3051 3052}"
chat_servers=${CHAT_SERVERS:-3}
nats_port=${NATS_PORT:-4222}
page_port=${PAGE_PORT:-3001}
web=examples/chat/web
builddir=build-release
options=(-Dbuildtype=release -Dtests=false -Dbench=false)

chat=${POMELO_CHAT:-$builddir/examples/pomelo-chat}
if [ -z "${POMELO_CHAT:-}" ] && [ ! -x "$chat" ]; then
  echo "cluster: $chat is missing: building it"
  bash tools/setup.sh || exit 1
  if [ -e "$builddir/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$builddir" "${options[@]}" || exit 1
  else
    meson setup "$builddir" "${options[@]}" || exit 1
  fi
  meson compile -C "$builddir" || exit 1
fi
if [ ! -x "$chat" ]; then
  echo "cluster: no pomelo-chat at $chat" >&2
  exit 1
fi
if ! timeout 5 "$chat" --help </dev/null 2>&1 | grep -q -- '--role'; then
  echo "cluster: $chat has no cluster mode (--role); rebuild it from this tree" >&2
  exit 1
fi
nats=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
if [ ! -x "$nats" ] && [ -z "${NATS_SERVER:-}" ]; then
  echo "cluster: installing Debian's nats-server"
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server ||
      { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server; }
  elif command -v sudo >/dev/null; then
    sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server
  fi
fi
if [ ! -x "$nats" ]; then
  echo "cluster: nats-server is missing: apt-get install nats-server (Debian's package)" >&2
  exit 1
fi
if [ ! -d "$web/node_modules/pomelo-jsclient-websocket" ]; then
  echo "cluster: the page's npm packages are missing: (cd $web && npm ci), or tools/setup.sh" >&2
  exit 1
fi

log_dir=${LOG_DIR:-$(mktemp -d /tmp/pomelo-cluster.XXXXXX)}
mkdir -p "$log_dir" || exit 1
nats_url=nats://$host:$nats_port
extra=()
[ -n "${ANNOUNCE_MS:-}" ] && extra+=(--announce-ms "$ANNOUNCE_MS")
[ -n "${TIMEOUT_MS:-}" ] && extra+=(--timeout-ms "$TIMEOUT_MS")

# Every process started: its PID and its name, in the order they started.
pids=()
names=()
alive() { kill -0 "$1" 2>/dev/null; }

stopping=0
# stop_pids PID...: SIGTERM, then up to 5 s for each to exit, then SIGKILL.
stop_pids() {
  local pid
  for pid in "$@"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in "$@"; do
    for _ in $(seq 50); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      echo "cluster: $pid did not stop in 5 s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
  done
}
stop_all() {
  [ "$stopping" = 1 ] && return
  stopping=1
  local i servers=() bus=() left=()
  # The servers first, the bus last (so that they can say bye on it).
  for i in "${!pids[@]}"; do
    if [ "${names[i]}" = nats-server ]; then
      bus+=("${pids[i]}")
    else
      servers+=("${pids[i]}")
    fi
  done
  [ ${#servers[@]} -gt 0 ] && stop_pids "${servers[@]}"
  [ ${#bus[@]} -gt 0 ] && stop_pids "${bus[@]}"
  for i in "${!pids[@]}"; do
    alive "${pids[i]}" && left+=("${names[i]} (${pids[i]})")
  done
  if [ ${#left[@]} -gt 0 ]; then
    echo "cluster: still running: ${left[*]}" >&2
  elif [ ${#pids[@]} -gt 0 ]; then
    echo "cluster: all ${#pids[@]} processes stopped; their logs are in $log_dir"
  fi
}
trap stop_all EXIT
trap 'echo; echo "cluster: stopping"; exit 0' INT TERM

# start NAME COMMAND...: starts it in the background, standard output in NAME.out and standard
# error in NAME.log, and records its PID.
start() {
  local name=$1
  shift
  "$@" >"$log_dir/$name.out" 2>"$log_dir/$name.log" </dev/null &
  pids+=($!)
  names+=("$name")
}

# wait_for NAME PATTERN FILE: waits (10 s at most) until FILE has a line matching PATTERN, while
# the process NAME still runs.
wait_for() {
  local name=$1 pattern=$2 file=$3 i pid=
  for i in "${!names[@]}"; do
    [ "${names[i]}" = "$name" ] && pid=${pids[i]}
  done
  for _ in $(seq 100); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    alive "$pid" || break
    sleep 0.1
  done
  echo "cluster: $name did not start:" >&2
  sed "s/^/cluster: $name: /" "$log_dir/$name.log" >&2
  return 1
}

echo "cluster: nats-server on $host:$nats_port"
start nats-server "$nats" -a "$host" -p "$nats_port"
wait_for nats-server 'Server is ready' "$log_dir/nats-server.log" || exit 1

chat_ids=()
for i in $(seq "$chat_servers"); do
  chat_ids+=("chat-server-$i")
  start "chat-server-$i" "$chat" --role chat --id "chat-server-$i" --nats "$nats_url" "${extra[@]}"
done
connector_ids=()
for i in "${!connector_ports[@]}"; do
  id=connector-server-$((i + 1))
  connector_ids+=("$id")
  start "$id" "$chat" --role connector --id "$id" --nats "$nats_url" --host "$host" \
    --port "${connector_ports[i]}" "${extra[@]}"
done
start gate-server-1 "$chat" --role gate --id gate-server-1 --nats "$nats_url" --host "$host" \
  --port "$gate_port" "${extra[@]}"
# The page server's request log goes to its own file.
start page-server python3 -m http.server --bind "$host" "$page_port" --directory "$web"

for id in "${chat_ids[@]}"; do
  wait_for "$id" "^ready $id\$" "$log_dir/$id.out" || exit 1
done
for id in "${connector_ids[@]}" gate-server-1; do
  wait_for "$id" "^ready $id " "$log_dir/$id.out" || exit 1
done
# The page server: until its port accepts connections (10 s at most).
for _ in $(seq 100); do
  (: <>"/dev/tcp/$host/$page_port") 2>/dev/null && break
  sleep 0.1
done
sleep 0.2 # a page server that lost the race for its port exits about now
for i in "${!pids[@]}"; do
  if ! alive "${pids[i]}"; then
    echo "cluster: ${names[i]} stopped at start:" >&2
    sed "s/^/cluster: ${names[i]}: /" "$log_dir/${names[i]}.log" >&2
    exit 1
  fi
done

# The gate hands out only the connectors it knows: wait (one announcement period and 3 s at
# most) until its log says that each of them joined.
joined=0
for _ in $(seq $(((${ANNOUNCE_MS:-5000} + 3000) / 100))); do
  joined=0
  for id in "${connector_ids[@]}"; do
    grep -q "^cluster: $id joined" "$log_dir/gate-server-1.log" && joined=$((joined + 1))
  done
  [ "$joined" = "${#connector_ids[@]}" ] && break
  sleep 0.1
done
if [ "$joined" != "${#connector_ids[@]}" ]; then
  echo "cluster: the gate knows $joined of the ${#connector_ids[@]} connectors so far" >&2
fi

echo
for i in "${!pids[@]}"; do
  line=$(head -n 1 "$log_dir/${names[i]}.out" 2>/dev/null)
  printf '  %-20s pid %-8s %s\n' "${names[i]}" "${pids[i]}" "${line:-}"
done
page="http://$host:$page_port/"
[ "$gate_port" != 3014 ] && page="$page?gate-port=$gate_port"
echo
echo "Open $page in a few browser tabs (one user each) to chat across the connectors."
echo "Raw-TCP clients work too, e.g. (docs/pomelo-client.md):"
echo "  $(dirname "$chat")/pomelo-client --host $host --port $gate_port request" \
  "gate.gateHandler.queryEntry '{\"uid\":\"me\"}'"
echo "Logs: $log_dir/*.log (tail -f them). Press Ctrl-C to stop everything."
echo

# Until Ctrl-C (the trap above), or until one of them stops by itself.
wait -n "${pids[@]}"
for i in "${!pids[@]}"; do
  if ! alive "${pids[i]}"; then
    echo "cluster: ${names[i]} stopped:" >&2
    tail -n 20 "$log_dir/${names[i]}.log" | sed "s/^/cluster: ${names[i]}: /" >&2
  fi
done
exit 1
