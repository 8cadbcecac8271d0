#!/usr/bin/env bash
# bench/micro.sh: builds the benchmarks in a release build of their own and runs them next to the
# node reference (the npm pomelo-protocol, pomelo-protobuf and pomelo 2.2.7 code), one after the
# other on this machine, then prints a summary of medians and ratios (docs/bench.md). Nothing here
# asserts on time. A few minutes at most on 2 cores, most of it node at 100,000 members.
#
#   bash bench/micro.sh
#
# Environment: BUILD_DIR (default build-bench at the top of the tree), SIZES (default
# 1000,10000,100000), REPS (runs per figure, default 21), ROUNDS (default 1: run everything this
# many times, alternating C and node, and summarise the median of the rounds), NODE (default
# node), BENCHES (which ones, default "codec protobuf fanout"). The end-to-end benchmarks are
# bench/run.sh's (docs/performance.md). Exits
# with status 1 after the summary when C and node did not encode the same protobuf bytes (or
# did not start from the same JSON text).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD_DIR:-$root/build-bench}
sizes=${SIZES:-1000,10000,100000}
reps=${REPS:-21}
rounds=${ROUNDS:-1}
node=${NODE:-node}
benches=" ${BENCHES:-codec protobuf fanout} "
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root" --buildtype=release -Dtests=false -Dexamples=false -Dbench=true
else
  meson configure "$build" -Dbuildtype=release -Dbench=true >/dev/null
fi
ninja -C "$build" bench/bench-fanout bench/bench-codec bench/bench-protobuf

have_node=1
if ! command -v "$node" >/dev/null 2>&1; then
  echo "(node not found: C figures only)"
  have_node=0
fi

echo
echo "== Machine =="
echo "date:   $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //') x $(nproc)"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (1, 5, 15 min, before the run)"
echo "kernel: $(uname -sr)"
cc_line=$(sed -n 's/^C compiler for the host machine: //p' "$build/meson-logs/meson-log.txt" |
  tail -1)
echo "cc:     $cc_line"
if [ "$have_node" = 1 ]; then
  echo "node:   $("$node" --version)"
fi

# Runs one program under a title; its lines go to the screen except the "@" lines, which go to
# the summary.
run() {
  local title=$1 status=0
  shift
  echo
  echo "== $title =="
  "$@" >"$out/last" 2>&1 || status=$?
  grep -v '^@' "$out/last" || true
  if [ "$status" = 77 ]; then
    echo "(skipped)"
  elif [ "$status" != 0 ]; then
    echo "(failed with status $status)"
    exit "$status"
  fi
  grep '^@' "$out/last" >>"$out/all" || true
}

: >"$out/all"
for round in $(seq 1 "$rounds"); do
  if [ "$rounds" -gt 1 ]; then
    echo
    echo "######## round $round of $rounds ########"
  fi
  if [[ $benches == *" codec "* ]]; then
    run "C: bench-codec" "$build/bench/bench-codec" --reps "$reps"
    if [ "$have_node" = 1 ]; then
      run "node: bench/codec.js" "$node" "$here/codec.js" --reps "$reps"
    fi
  fi
  if [[ $benches == *" protobuf "* ]]; then
    run "C: bench-protobuf" "$build/bench/bench-protobuf" --reps "$reps"
    if [ "$have_node" = 1 ]; then
      run "node: bench/protobuf.js" "$node" "$here/protobuf.js" --reps "$reps"
    fi
  fi
  if [[ $benches == *" fanout "* ]]; then
    run "C: bench-fanout" "$build/bench/bench-fanout" --reps "$reps" --sizes "$sizes"
    if [ "$have_node" = 1 ]; then
      run "node: bench/fanout.js" "$node" --expose-gc "$here/fanout.js" --reps "$reps" \
        --sizes "$sizes"
    fi
  fi
done

echo
of_rounds=""
if [ "$rounds" -gt 1 ]; then
  of_rounds=" of $rounds rounds"
fi
echo "== Summary (medians$of_rounds; ratio = node time / C time) =="
status=0
awk -v sizes="$sizes" -v benches="$benches" -v flag="$out/mismatch" '
$1 == "@" {
  k = $2 " " $3 " " $4 " " $5
  c[k]++
  v[k, c[k]] = $6 + 0
}
function med(k,    i, j, t, n, a) {
  n = c[k]
  if (!n) return -1
  for (i = 1; i <= n; i++) a[i] = v[k, i]
  for (i = 2; i <= n; i++) {
    t = a[i]
    for (j = i - 1; j > 0 && a[j] > t; j--) a[j + 1] = a[j]
    a[j + 1] = t
  }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function num(x, f) { return x < 0 ? "-" : sprintf(f, x) }
function ratio(a, b) { return (a < 0 || b <= 0) ? "-" : sprintf("%.1fx", a / b) }
# The key of "@ BENCH IMPL WHAT.NAME ..." lines, or "".
function key_of(bench, impl, what, name,    k, q) {
  for (k in c) {
    split(k, q, " ")
    if (q[1] == bench && q[2] == impl && q[3] == what "." name) return k
  }
  return ""
}
function fig(bench, impl, what, name,    k) {
  k = key_of(bench, impl, what, name)
  return k == "" ? -1 : med(k)
}
# "yes" when both sides printed the same length and hash for WHAT.NAME, "NO" when they differ.
function same_bytes(bench, what, name,    ck, nk, q, r) {
  ck = key_of(bench, "c", what, name); nk = key_of(bench, "node", what, name)
  if (ck == "" || nk == "") return "-"
  split(ck, q, " "); split(nk, r, " ")
  if (q[4] == r[4] && med(ck) == med(nk)) return "yes"
  alarms = alarms "!!! MISMATCH: " bench " " what "." name ": C " q[4] " bytes, fnv1a " \
           med(ck) "; node " r[4] " bytes, fnv1a " med(nk) " !!!\n"
  printf "" > flag
  return "NO"
}
# Protobuf rows; pre = "cpu_" (CPU time) or "" (wall time).
function protobuf_table(pre,    i, M, k, q, nb, cet, cex, cdt, net, nex, ndo, ndt) {
  printf "%-5s %6s %9s %9s %6s %9s %9s %6s %9s %9s %9s %6s %6s\n", "msg", "bytes", "C enc",
         "node enc", "ratio", "C +parse", "node +prs", "ratio", "C dec", "node dec",
         "node +str", "ratio", "ratio"
  split("chat area", M, " ")
  for (i = 1; i <= 2; i++) {
    k = key_of("protobuf", "c", "check", M[i]); split(k, q, " "); nb = k == "" ? "-" : q[4]
    cet = fig("protobuf", "c", pre "enc_tree", M[i])
    cex = fig("protobuf", "c", pre "enc_text", M[i])
    cdt = fig("protobuf", "c", pre "dec_text", M[i])
    net = fig("protobuf", "node", pre "enc_obj", M[i])
    nex = fig("protobuf", "node", pre "enc_text", M[i])
    ndo = fig("protobuf", "node", pre "dec_obj", M[i])
    ndt = fig("protobuf", "node", pre "dec_text", M[i])
    printf "%-5s %6s %9s %9s %6s %9s %9s %6s %9s %9s %9s %6s %6s\n", M[i], nb, num(cet, "%.0f"),
           num(net, "%.0f"), ratio(net, cet), num(cex, "%.0f"), num(nex, "%.0f"), ratio(nex, cex),
           num(cdt, "%.0f"), num(ndo, "%.0f"), num(ndt, "%.0f"), ratio(ndo, cdt), ratio(ndt, cdt)
  }
}
function codec_key(impl, what, name,    k) {
  for (k in c) {
    split(k, p, " ")
    if (p[1] == "codec" && p[2] == impl && p[3] == what "." name) return k
  }
  return ""
}
END {
  n = split(sizes, S, ",")
  if (index(benches, " fanout ")) fanout_summary(n, S)
  if (index(benches, " codec ")) codec_summary()
  if (index(benches, " protobuf ")) protobuf_summary()
}
function protobuf_summary(    i, M, si, sb) {
  print ""
  print "Protobuf (pomelo-protobuf bodies): ns per message, CPU time of the process"
  print "(C enc = measure + encode from a parsed tree, +parse = JSON text parsed first; node enc ="
  print " encode(route, object), +prs = encode(route, JSON.parse(text)); C dec = to JSON text, node"
  print " dec = decode to an object, +str = JSON.stringify of it; ratios = node / C, the last one"
  print " node +str / C dec)"
  protobuf_table("cpu_")
  print ""
  print "The same, wall time (includes the time other processes held the core)"
  protobuf_table("")
  print ""
  split("chat area", M, " ")
  for (i = 1; i <= 2; i++) {
    si = same_bytes("protobuf", "input", M[i]); sb = same_bytes("protobuf", "check", M[i])
    printf "%s: same JSON text on both sides: %s; same bytes: %s; C allocations per op: enc %s, " \
           "+parse %s, dec %s; C one-pass encode into a large buffer: %s ns (CPU)\n", M[i], si, sb,
           num(fig("protobuf", "c", "allocs_enc_tree", M[i]), "%.0f"),
           num(fig("protobuf", "c", "allocs_enc_text", M[i]), "%.0f"),
           num(fig("protobuf", "c", "allocs_dec_text", M[i]), "%.0f"),
           num(fig("protobuf", "c", "cpu_enc_fixed", M[i]), "%.0f")
  }
  printf "%s", alarms
}
function fanout_summary(n, S,    i, N, cc, cu, nm, nr, nl, b4) {
  print ""
  print "Fan-out: ns per member for one push of 100 bytes to N members"
  print "(half raw TCP, half WebSocket; C uids = pomelo_server_push_uids, as the node rows do)"
  printf "%9s %10s %9s %11s %10s %10s %9s %8s %8s %10s\n", "N", "C channel", "C uids",
         "node model", "node real", "node lean", "model/C", "real/C", "lean/C", "model/C uids"
  for (i = 1; i <= n; i++) {
    N = S[i]
    cc = med("fanout c push.channel.mixed " N)
    cu = med("fanout c push.uids.mixed " N)
    nm = med("fanout node push.model " N)
    nr = med("fanout node push.real " N)
    nl = med("fanout node push.lean " N)
    printf "%9s %10s %9s %11s %10s %10s %9s %8s %8s %10s\n", N, num(cc, "%.1f"), num(cu, "%.1f"),
           num(nm, "%.1f"), num(nr, "%.1f"), num(nl, "%.1f"), ratio(nm, cc), ratio(nr, cc),
           ratio(nl, cc), ratio(nm, cu)
  }
  print ""
  print "C only: per-transport push, drain (out_iov + out_consume) and allocations"
  printf "%9s %9s %9s %11s %12s %13s %16s\n", "N", "C tcp", "C ws", "C drain", "allocs/push",
         "burst4 allocs", "burst4 allocs/mbr"
  for (i = 1; i <= n; i++) {
    N = S[i]
    b4 = med("fanout c allocs.channel.burst4 " N)
    printf "%9s %9s %9s %11s %12s %13s %16s\n", N, num(med("fanout c push.channel.tcp " N), "%.1f"),
           num(med("fanout c push.channel.ws " N), "%.1f"),
           num(med("fanout c drain.channel.mixed " N), "%.1f"),
           num(med("fanout c allocs.channel.mixed " N), "%.2f"), num(b4, "%.1f"),
           b4 < 0 ? "-" : sprintf("%.3f", b4 / N)
  }
  print ""
  print "Memory per session, bytes (C: live heap of the server allocator; node: rough model)"
  printf "%9s %10s %9s %10s %9s %12s %12s %11s\n", "N", "C idle TCP", "C idle WS", "C idle avg",
         "C total", "node model", "node real", "node lean"
  for (i = 1; i <= n; i++) {
    N = S[i]
    printf "%9s %10s %9s %10s %9s %12s %12s %11s\n", N,
           num(med("fanout c mem.idle_tcp " N), "%.0f"),
           num(med("fanout c mem.idle_ws " N), "%.0f"), num(med("fanout c mem.idle " N), "%.0f"),
           num(med("fanout c mem.total " N), "%.0f"), num(med("fanout node mem.model " N), "%.0f"),
           num(med("fanout node mem.real " N), "%.0f"), num(med("fanout node mem.lean " N), "%.0f")
  }
  print "(C idle = after the handshake and ACK; C total = + bound to a uid + member of one channel;"
  print " node = process heap + external growth for the JS session objects only, no sockets)"
}
function codec_summary(    i, M, ce, ne, cd, nd, ck, nk, p, q, same, a, b, x, y) {
  print ""
  print "Codec: ns per message (package encode or decode of a DATA message)"
  printf "%-9s %6s %8s %9s %7s %8s %9s %7s %11s\n", "message", "bytes", "C enc", "node enc",
         "ratio", "C dec", "node dec", "ratio", "same bytes"
  split("request push response", M, " ")
  for (i = 1; i <= 3; i++) {
    ce = codec_key("c", "encode", M[i]); ne = codec_key("node", "encode", M[i])
    cd = codec_key("c", "decode", M[i]); nd = codec_key("node", "decode", M[i])
    ck = codec_key("c", "check", M[i]); nk = codec_key("node", "check", M[i])
    split(ck, p, " ")
    split(nk, q, " ")
    same = (ck == "" || nk == "") ? "-" : ((p[4] == q[4] && med(ck) == med(nk)) ? "yes" : "NO")
    a = ce == "" ? -1 : med(ce); b = ne == "" ? -1 : med(ne)
    x = cd == "" ? -1 : med(cd); y = nd == "" ? -1 : med(nd)
    printf "%-9s %6s %8s %9s %7s %8s %9s %7s %11s\n", M[i], p[4], num(a, "%.1f"), num(b, "%.1f"),
           ratio(b, a), num(x, "%.1f"), num(y, "%.1f"), ratio(y, x), same
  }
}' "$out/all"
if [ -e "$out/mismatch" ]; then
  echo
  echo "!!! C and node encoded different bytes (see MISMATCH above) !!!"
  status=1
fi
echo
echo "One noisy machine: compare ratios measured in the same run, not absolute figures."
exit "$status"
