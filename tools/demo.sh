#!/usr/bin/env bash
# Demo: installs the dependencies (tools/setup.sh: apt packages, and npm ci of every folder with
# a package-lock.json, among them the chat page's browser libraries in examples/chat/web),
# builds libpomelo (release, in build-release/), then starts the chat demo (docs/chat.md):
#   - examples/chat/pomelo-chat: gate on 127.0.0.1:3014, connector on 127.0.0.1:3050;
#   - the chat page, served from examples/chat/web by python3's http.server on 127.0.0.1:3001.
# Open http://127.0.0.1:3001/ in two browser tabs to chat. Ctrl-C stops both servers.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

builddir=build-release
options=(-Dbuildtype=release -Dtests=false -Dbench=false)
host=127.0.0.1
gate_port=3014
connector_port=3050
page_port=3001
web=examples/chat/web

bash tools/setup.sh || exit 1

if [ -e "$builddir/meson-private/coredata.dat" ]; then
  meson setup --reconfigure "$builddir" "${options[@]}" || exit 1
else
  meson setup "$builddir" "${options[@]}" || exit 1
fi
meson compile -C "$builddir" || exit 1

chat=$builddir/examples/pomelo-chat
if [ ! -x "$chat" ] || [ ! -d "$web/node_modules/pomelo-jsclient-websocket" ]; then
  echo "demo: missing $chat or the page's npm packages in $web/node_modules" >&2
  exit 1
fi

# The two servers run in the background; their PIDs are recorded, and they are stopped (SIGTERM)
# on Ctrl-C, on any exit of this script, or when one of them stops by itself.
work=$(mktemp -d)
pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null
  done
  pids=()
  rm -rf "$work"
}
trap stop_all EXIT
trap 'echo; echo "demo: stopping"; exit 0' INT TERM

# alive PID: is that process still running?
alive() { kill -0 "$1" 2>/dev/null; }

echo
echo "demo: starting pomelo-chat and the page server"
# pomelo-chat prints "gate on H:P, connector on H:P" on standard output once it listens (kept in
# a file to wait for it), and who enters and leaves on standard error (the terminal).
"$chat" --host "$host" --gate-port "$gate_port" --port "$connector_port" >"$work/chat.out" &
chat_pid=$!
pids+=("$chat_pid")
# The page server's request log would drown the chat's: it goes to a file, shown on failure.
python3 -m http.server --bind "$host" "$page_port" --directory "$web" >"$work/web.log" 2>&1 &
web_pid=$!
pids+=("$web_pid")

# Wait (10 s at most) until pomelo-chat said it listens and the page port accepts connections.
ready=0
for _ in $(seq 100); do
  alive "$chat_pid" && alive "$web_pid" || break
  if grep -q '^gate on' "$work/chat.out" && (: <>"/dev/tcp/$host/$page_port") 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
sleep 0.2 # a page server that lost the race for its port exits about now
if [ "$ready" = 0 ] || ! alive "$chat_pid" || ! alive "$web_pid"; then
  echo "demo: the servers did not start (are ports $gate_port, $connector_port and" \
    "$page_port free?)" >&2
  alive "$web_pid" || sed 's/^/demo: page server: /' "$work/web.log" >&2
  exit 1
fi

cat "$work/chat.out"
echo "page on http://$host:$page_port/ (serving $web)"
echo
echo "Open http://$host:$page_port/ in a browser (two tabs to chat)"
echo "Raw-TCP clients work too; from another terminal, for example (more in docs/chat.md):"
echo "  $builddir/examples/pomelo-client --port $gate_port request gate.gateHandler.queryEntry" \
  "'{\"uid\":\"me\"}'"
echo "Press Ctrl-C to stop."
echo

# Until Ctrl-C (the trap above), or until one of the servers stops by itself.
wait -n "$chat_pid" "$web_pid"
if ! alive "$chat_pid"; then
  echo "demo: pomelo-chat stopped" >&2
else
  echo "demo: the page server stopped:" >&2
  sed 's/^/demo: page server: /' "$work/web.log" >&2
fi
exit 1
