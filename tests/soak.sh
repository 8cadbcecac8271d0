#!/usr/bin/env bash
# The soak (meson test "soak", in .ci/run): pomelo-chat under SOAK_USERS connections for
# SOAK_SECONDS, driven by bench-load, that must come out clean.
#
#   bash tests/soak.sh POMELO_CHAT BENCH_LOAD
#
# pomelo-chat runs in one process with its limits on: slow consumers closed over 32 KiB of
# queued output (--sndbuf 16384: the kernel's part of that is bounded too), 50 requests per
# second per session (burst 100), dropped above. bench-load (4 processes; TCP and WebSocket
# mixed; SOAK_USERS users, default 10,000, in rooms of 100) keeps 2 senders per room chatting
# at 5 messages per second each, while 200 users leave and come back every 2 s, 20 users stop
# reading, and 2 flooders send 1000 requests per second each. Passes when:
#   - every push reached every member that stayed exactly once, in order, and none of them
#     lost its connection (bench-load's own checks: its exit status);
#   - every slow consumer was closed by the server's policy, and the server counted exactly as
#     many slow disconnects;
#   - the flooders got at most their rate limit answered (50/s each, + the burst), the server
#     counted (nearly all of) the rest as rate limited and nobody else's, and each answered send
#     reached its flooder exactly once;
#   - churners did leave and come back; the server's resident memory stayed under
#     SOAK_RSS_MIB (default 512);
#   - pomelo-chat exits 0 on SIGTERM and nothing is left running.
# Environment: SOAK_USERS, SOAK_SECONDS (default 45), SOAK_RSS_MIB, SOAK_PROCS (4).
set -euo pipefail

chat=${1:?pomelo-chat}
load=${2:?bench-load}
users=${SOAK_USERS:-10000}
secs=${SOAK_SECONDS:-45}
rss_mib=${SOAK_RSS_MIB:-512}
procs=${SOAK_PROCS:-4}
rate_limit=50
rate_burst=100
flooders=2
slow=20
work=$(mktemp -d)
chat_pid=""

cleanup() {
  if [ -n "$chat_pid" ] && kill -0 "$chat_pid" 2>/dev/null; then
    kill -KILL "$chat_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "soak: FAIL: $*"
  exit 1
}

# The server: every port picked by the system, printed on its first line.
"$chat" --gate-port 0 --port 0 --max-output 32768 --slow-policy close --sndbuf 16384 \
  --rate-limit "$rate_limit" --rate-burst "$rate_burst" >"$work/chat.out" 2>"$work/chat.err" &
chat_pid=$!
for _ in $(seq 1 100); do
  grep -q '^gate on ' "$work/chat.out" 2>/dev/null && break
  kill -0 "$chat_pid" 2>/dev/null || { cat "$work/chat.err"; fail "pomelo-chat did not start"; }
  sleep 0.1
done
gate=$(sed -n 's/^gate on \([^,]*\),.*/\1/p' "$work/chat.out")
[ -n "$gate" ] || fail "no gate address from pomelo-chat"
echo "soak: pomelo-chat pid $chat_pid, gate $gate; $users users for $secs s"

status=0
"$load" --gate "$gate" --users "$users" --rooms $((users / 100)) --senders 2 \
  --rate $((users / 100 * 10)) --seconds "$secs" --warmup 5 --procs "$procs" --transport mixed \
  --msg-bytes 200 --slow "$slow" --churn 200 --churn-ms 2000 --flood "$flooders" \
  --flood-rate 1000 --login-window 200 --timeout-ms 20000 --server-pid "$chat_pid" \
  --max-server-rss-mib "$rss_mib" --label soak >"$work/load.out" 2>&1 || status=$?
grep -v '^@' "$work/load.out"
[ "$status" = 0 ] || fail "bench-load exited with status $status"

fig() {
  awk -v k="$1" '$1 == "@" && $4 == k { print $5 }' "$work/load.out"
}
# The server's counters, printed at exit.
kill -TERM "$chat_pid"
for _ in $(seq 1 100); do
  kill -0 "$chat_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$chat_pid" 2>/dev/null; then
  fail "pomelo-chat still runs 10 s after SIGTERM"
fi
chat_status=0
wait "$chat_pid" || chat_status=$?
chat_pid=""
[ "$chat_status" = 0 ] || { tail -5 "$work/chat.err"; fail "pomelo-chat exited with $chat_status"; }
counters=$(grep 'connector-server-1: sessions' "$work/chat.err") || fail "no server counters"
echo "soak: server: ${counters#*: }"
server() { # the counter named $1 from pomelo-chat's line
  echo "$counters" | sed -n "s/.*[:,] $1 \([0-9]*\).*/\1/p"
}

slow_n=$(fig slow_n)
slow_closed=$(fig slow_closed)
[ "$slow_n" = "$slow" ] || fail "$slow_n slow consumers, $slow expected"
[ "$slow_closed" = "$slow_n" ] || fail "$slow_closed of $slow_n slow consumers were closed"
[ "$(server 'slow disconnects')" = "$slow_n" ] ||
  fail "the server counted $(server 'slow disconnects') slow disconnects, $slow_n expected"

flood_ok=$(fig flood_ok)
flood_sent=$(fig flood_sent)
limited=$(server 'rate limited')
max_ok=$((flooders * (rate_limit * (secs + 1) + rate_burst)))
[ "$flood_ok" -gt 0 ] || fail "no flooder request was answered"
[ "$flood_ok" -le "$max_ok" ] || fail "flooders got $flood_ok answers, the limit allows $max_ok"
# Nearly all the flooders' unanswered requests were dropped by the rate limit (the rest were
# refused by the forwards' in-flight bound, answered {"code":500}, or in flight at the end), and
# nobody else's was.
unanswered=$((flood_sent - flood_ok))
[ "$limited" -le "$unanswered" ] && [ $((limited * 10)) -ge $((unanswered * 9)) ] ||
  fail "the server rate-limited $limited requests; the flooders had $unanswered unanswered"

[ "$(fig churn_leaves)" -gt 0 ] && [ "$(fig churn_joins)" -gt 0 ] || fail "no churn happened"
[ "$(fig logged_in)" = $((users + flooders)) ] || fail "not every user logged in"

if pgrep -f -- "--label soak" >/dev/null 2>&1; then
  fail "a bench-load process is still running"
fi
echo "soak: ok: $(fig pushes_per_s) pushes/s exactly once to every member that stayed," \
  "$slow_closed slow consumers closed, flooders answered $flood_ok of $flood_sent," \
  "$(fig churn_joins) rejoins, server RSS max $(fig server_rss_max_mib) MiB"
