#!/usr/bin/env python3
# bench/report.py: writes docs/performance.md (and its SVG plots, through bench/plot.py) from
# the figures bench/run.sh collected. Medians over the rounds; ratios of medians measured in the
# same run. Python 3 standard library only.
#
#   python3 bench/report.py --dir FIGURES --out docs/performance.md
#
# FIGURES holds what bench/run.sh wrote there:
#   machine.txt    "key: value" lines about the machine and the run;
#   load.txt       "@ load SERVER:TEST:ROUND KEY VALUE" lines (bench/load.sh, bench-load);
#   latency.tsv    open-loop echo latency percentiles, "SERVER:open:1<TAB>percentile<TAB>ms";
#   idle.txt       "@ idle server=S transport=T n=N ... rss_bytes_per_conn=B ..." (bench/idle.sh);
#   sessions.txt   "@ sessions KEY N VALUE" (bench-sessions);
#   soak.txt       the output of tests/soak.sh.
# Any of them may be missing: its section then says so.
#
# SPDX-License-Identifier: MIT
"""Summarise bench/run.sh's figures into docs/performance.md with SVG plots."""

import argparse
import os
import statistics
import subprocess
import sys

NAMES = {
    "pomelo": "pomelo 2.2.7",
    "pomelo-nodelay": "pomelo 2.2.7 + TCP_NODELAY",
    "single": "pomelo-chat",
    "ours": "pomelo-chat cluster (NATS)",
    "chat": "pomelo-chat",
    "real": "pomelo 2.2.7",
    "echo": "pomelo-echo",
}
ORDER = ["single", "ours", "pomelo-nodelay", "pomelo"]
# bench-sessions' figures shown: key, what, unit.
SESSION_ROWS = [
    ("time.create_ns", "a session made (accept, handshake, ACK, drains)", "ns"),
    ("mem.idle_bytes", "heap per session after the handshake", "B"),
    ("mem.total_bytes", "heap per session bound to a uid and in a channel", "B"),
    ("rss.idle_bytes", "resident memory per session after the handshake", "B"),
    ("rss.total_bytes", "resident memory per session bound and in a channel", "B"),
    ("rss.peak_mib", "peak resident memory", "MiB"),
    ("hb.due_per_tick", "heartbeats due per 50 ms tick (3 s interval)", ""),
    ("hb.tick_ns", "one tick: answering those heartbeats and draining", "ns"),
    ("hb.tick_ns_per_due", "the same per heartbeat due", "ns"),
    ("hb.idle_tick_ns", "a tick with nothing due (pomelo_server_handle_expiry)", "ns"),
    ("timeout.expiry_ns_per_due", "a heartbeat timeout, per session timed out", "ns"),
    ("timeout.release_ns", "releasing a timed-out session (leaves its channel)", "ns"),
    ("push.ns_per_member", "a channel push to all, per member", "ns"),
    ("push.drain_ns_per_member", "draining it (out_iov + out_consume), per member", "ns"),
    ("push.allocs", "allocations per push (to all members)", ""),
    ("run.seconds", "the whole run", "s"),
]


def name(s):
    """A server's display name."""
    return NAMES.get(s, s)


def read_load(path):
    """{(server, test): {key: [values over rounds]}} from load.txt."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            p = line.split()
            if len(p) != 5 or p[0] != "@" or p[1] != "load":
                continue
            if p[2] == "all":  # "@ load all open_rate R": the open-loop runs' rate
                out.setdefault(("all", "open"), {}).setdefault(p[3], []).append(float(p[4]))
                continue
            if p[2].count(":") != 2:
                continue
            server, test, _ = p[2].split(":")
            out.setdefault((server, test), {}).setdefault(p[3], []).append(float(p[4]))
    return out


def med(load, server, test, key):
    """The median of a figure over the rounds, or None."""
    v = load.get((server, test), {}).get(key)
    return statistics.median(v) if v else None


def fmt(v, digits=None):
    """A number for a table: thousands separators, sensible precision; '-' for None."""
    if v is None:
        return "-"
    if digits is not None:
        return f"{v:,.{digits}f}"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratio(a, b):
    """a / b as '12.3x', or '-'."""
    if a is None or b is None or b == 0:
        return "-"
    r = a / b
    return f"{r:,.0f}x" if r >= 100 else f"{r:.1f}x"


def servers_in(load):
    """The servers that ran, in display order."""
    seen = {s for s, _ in load}
    return [s for s in ORDER if s in seen] + sorted(seen - set(ORDER) - {"all"})


def rounds_of(load, server, test, key="pushes_per_s"):
    """How many rounds a figure has."""
    return len(load.get((server, test), {}).get(key, []))


def share(load, server, test):
    """The kernel's share of the server's CPU, as 'NN %'."""
    v = med(load, server, test, "server_sys_fraction")
    return "-" if v is None else f"{v * 100:.0f} %"


def failed_note(load, server, test):
    """' (+N failed)' when runs against this server failed their checks, else ''."""
    n = len(load.get((server, test), {}).get("failed", []))
    return f" (+{n} failed: the server closed clients' connections or lost pushes)" if n else ""


def chat_table(load, test, lines):
    """The closed-loop chat table of one transport."""
    lines.append("| server | pushes/s | sends/s | echo p50 / p99 / p99.9 ms | server cores | "
                 "server CPU s per M pushes | kernel share | generator cores | rounds |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for s in servers_in(load):
        if (s, test) not in load:
            continue
        sat = med(load, s, test, "gen_saturated")
        gen = fmt(med(load, s, test, "gen_cores"))
        if sat and sat >= 0.5:
            gen += " (saturated)"
        lines.append(
            f"| {name(s)} | {fmt(med(load, s, test, 'pushes_per_s'))} | "
            f"{fmt(med(load, s, test, 'sends_per_s'))} | "
            f"{fmt(med(load, s, test, 'echo_p50_ms'))} / {fmt(med(load, s, test, 'echo_p99_ms'))}"
            f" / {fmt(med(load, s, test, 'echo_p999_ms'))} | "
            f"{fmt(med(load, s, test, 'server_cores'))} | "
            f"{fmt(med(load, s, test, 'server_cpu_s_per_mpush'))} | {share(load, s, test)} | "
            f"{gen} | "
            f"{rounds_of(load, s, test)}{failed_note(load, s, test)} |")


def write_tsv(path, rows):
    """Writes series<TAB>x<TAB>y rows; returns whether there was any."""
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write("\t".join(str(x) for x in r) + "\n")
    return bool(rows)


def plot(args, kind, tsv, svg, *opts):
    """Runs bench/plot.py; returns True when the SVG was written."""
    here = os.path.dirname(os.path.abspath(__file__))
    cmd = [sys.executable, os.path.join(here, "plot.py"), kind, tsv, svg, *opts]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        print(f"report.py: plot.py failed: {r.stderr.strip()}", file=sys.stderr)
        return False
    return True


def read_kv(path, prefix):
    """Lines '@ PREFIX ...' of a file, split, or []."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [ln.split() for ln in f if ln.startswith("@ " + prefix + " ")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", required=True, help="the figures bench/run.sh collected")
    ap.add_argument("--out", required=True, help="the Markdown file to write")
    a = ap.parse_args(argv)
    d = a.dir
    outdir = os.path.dirname(os.path.abspath(a.out))
    load = read_load(os.path.join(d, "load.txt"))
    machine = []
    if os.path.exists(os.path.join(d, "machine.txt")):
        with open(os.path.join(d, "machine.txt"), encoding="utf-8") as f:
            machine = [ln.rstrip("\n") for ln in f if ln.strip()]
    L = []
    L.append("# Performance end to end")
    L.append("")
    L.append("Written by `bash bench/run.sh` (about 10 minutes): pomelo-chat (libpomelo) next to "
             "the real chatofpomelo on pomelo 2.2.7, both driven by the same C load generator "
             "(`bench/load.c`, the library's client role), on one machine in one run. Machines "
             "are noisy: read the ratios and medians measured in the same run, not absolute "
             "figures. The library's microbenchmarks (codec, protobuf, fan-out) are in "
             "[bench.md](bench.md); the cluster over NATS next to pomelo's RPC in "
             "[performance-cluster.md](performance-cluster.md).")
    L.append("")
    L.append("## Machine and run")
    L.append("")
    for m in machine:
        L.append(f"- {m}")
    L.append("- **Server and generator share the same 2 cores** in every figure below: a server "
             "that is faster leaves more of the machine to the generator, and the generator's "
             "own CPU is given next to each figure (\"saturated\" above 0.9 core per generator "
             "process: the throughput is then the generator's, not the server's).")
    L.append("")
    L.append("Servers (started by `bench/cluster.sh up NAME` in a process group of their own, "
             "stopped by it):")
    L.append("")
    L.append("| name | what |")
    L.append("|---|---|")
    L.append("| pomelo-chat | `examples/chat/pomelo-chat.c`, one process (gate, connector and "
             "chat server on the in-process bus), release build |")
    L.append("| pomelo 2.2.7 | chatofpomelo rebuilt for pomelo 2.2.7 from npm "
             "(`bench/peers/chatofpomelo`): master, gate, 3 connectors, 3 chat servers, RPC "
             "over pomelo-rpc as shipped (Nagle on) |")
    L.append("| pomelo 2.2.7 + TCP_NODELAY | the same with TCP_NODELAY on every socket "
             "(`nodelay.js` preloaded) |")
    L.append("")
    L.append("Every run checks the chat: each `onChat` carries `<room>.<sender>.<sequence>` and "
             "every member counts it; a push lost, doubled, out of order or from another room "
             "fails the run (none did). Each figure is the median of the rounds (alternating "
             "order); the first 2 s of each run are not measured; a 3 s warm-up runs after each "
             "server start (node's JIT).")
    L.append("")

    # --- chat, closed loop
    L.append("## Chat: 100 users in one room")
    L.append("")
    L.append("4 senders, 4 sends in flight each (closed loop); every send is pushed to the 100 "
             "members (the sender included). Echo latency: send to the sender's own `onChat`.")
    for test, title in (("chat-tcp", "Raw TCP"), ("chat-ws", "WebSocket"),
                        ("chat-tcp-w16", "Raw TCP, 16 sends in flight per sender")):
        if not any(t == test for _, t in load):
            continue
        L.append("")
        L.append(f"### {title}")
        L.append("")
        chat_table(load, test, L)
    L.append("")

    # --- open loop
    rate = med(load, "all", "open", "open_rate")
    opens = [s for s in servers_in(load) if (s, "open") in load]
    if opens:
        L.append("## Latency at the real server's best sustained rate")
        L.append("")
        L.append(f"Open loop at {fmt(rate)} sends/s (the best median sends/s of the real "
                 "server's closed-loop TCP runs), 100 users in one room over raw TCP: each send "
                 "is due at a fixed time and its latency counts from then (no coordinated "
                 "omission).")
        L.append("")
        L.append("| server | sends/s | pushes/s | echo p50 | p90 | p99 | p99.9 | max ms | "
                 "server CPU s per M pushes | errors |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for s in opens:
            f = lambda k: med(load, s, "open", k)  # noqa: E731
            L.append(f"| {name(s)} | {fmt(f('sends_per_s'))} | {fmt(f('pushes_per_s'))} | "
                     f"{fmt(f('echo_p50_ms'))} | {fmt(f('echo_p90_ms'))} | "
                     f"{fmt(f('echo_p99_ms'))} | {fmt(f('echo_p999_ms'))} | "
                     f"{fmt(f('echo_max_ms'))} | {fmt(f('server_cpu_s_per_mpush'))} | "
                     f"{fmt(f('errors'), 0)} |")
        lat = os.path.join(d, "latency.tsv")
        rows = []
        if os.path.exists(lat):
            with open(lat, encoding="utf-8") as fh:
                for ln in fh:
                    p = ln.rstrip("\n").split("\t")
                    if len(p) == 3 and float(p[2]) > 0:
                        rows.append((p[0].split(":")[0], p[1], p[2]))
        # the same colours in every plot: servers in display order
        rank = {s: i for i, s in enumerate(servers_in(load))}
        rows.sort(key=lambda r: rank.get(r[0], len(rank)))
        rows = [(name(r[0]), r[1], r[2]) for r in rows]
        tsv = os.path.join(d, "latency-plot.tsv")
        svg = os.path.join(outdir, "perf-latency.svg")
        if write_tsv(tsv, rows) and plot(a, "latency", tsv, svg, "--title",
                                         f"Echo latency at {fmt(rate)} sends/s, 100 users, "
                                         "one room (open loop)"):
            L.append("")
            L.append("![echo latency distribution](perf-latency.svg)")
        L.append("")

    # --- sweep
    sweep = {int(t.split("-")[1]) for _, t in load if t.startswith("users-")}
    if sweep and any(t == "chat-tcp" for _, t in load):
        sweep.add(100)  # the chat-tcp runs: the same settings with 100 users
    sweep = sorted(sweep)
    if sweep:
        L.append("## Pushes/s against room size")
        L.append("")
        L.append("One room of N users, 4 senders, 4 in flight each, raw TCP (first round only).")
        L.append("")
        L.append("| server | " + " | ".join(f"N={n}" for n in sweep) + " |")
        L.append("|---|" + "---|" * len(sweep))
        rows = []
        for s in servers_in(load):
            cells = []
            for n in sweep:
                v = med(load, s, f"users-{n}", "pushes_per_s")
                if v is None and n == 100:
                    v = med(load, s, "chat-tcp", "pushes_per_s")
                cells.append(fmt(v))
                if v:
                    rows.append((name(s), n, f"{v:.1f}"))
            L.append(f"| {name(s)} | " + " | ".join(cells) + " |")
        tsv = os.path.join(d, "users-plot.tsv")
        svg = os.path.join(outdir, "perf-users.svg")
        if write_tsv(tsv, rows) and plot(a, "xy", tsv, svg, "--title",
                                         "Pushes delivered per second against room size",
                                         "--xlabel", "users in the room", "--ylabel",
                                         "pushes/s", "--logx", "--logy"):
            L.append("")
            L.append("![pushes per second against users](perf-users.svg)")
        L.append("")

    # --- handshakes
    hs_tests = [("hs-tcp", "TCP, first visit"), ("hs-tcp-cached", "TCP, returning"),
                ("hs-ws", "WebSocket, first visit")]
    if any((s, t) in load for s in servers_in(load) for t, _ in hs_tests):
        L.append("## Handshakes")
        L.append("")
        L.append("50 clients at a time (2 generator processes) connect to one connector, "
                 "handshake, ACK and close, over and over. First visit: a fresh client, so the "
                 "answer carries the route dictionary and protos; returning: the client sends "
                 "the versions it cached. Server CPU per handshake includes the kernel's TCP "
                 "connection set-up and teardown (the \"kernel\" share).")
        L.append("")
        L.append("| server | test | handshakes/s | p50 / p99 ms | server CPU us per handshake "
                 "| kernel share | generator cores |")
        L.append("|---|---|---|---|---|---|---|")
        for t, title in hs_tests:
            for s in servers_in(load):
                if (s, t) not in load:
                    continue
                f = lambda k: med(load, s, t, k)  # noqa: E731
                L.append(f"| {name(s)} | {title} | {fmt(f('handshakes_per_s'))} | "
                         f"{fmt(f('hs_p50_ms'))} / {fmt(f('hs_p99_ms'))} | "
                         f"{fmt(f('server_cpu_us_per_hs'))} | "
                         f"{share(load, s, t)} | "
                         f"{fmt(f('gen_cores'))} |")
        L.append("")

    # --- idle
    idle = read_kv(os.path.join(d, "idle.txt"), "idle")
    idle_rows = []
    for p in idle:
        kv = dict(x.split("=", 1) for x in p[2:] if "=" in x)
        if "server" in kv:
            idle_rows.append(kv)
    if idle_rows:
        L.append("## Idle connections")
        L.append("")
        n = idle_rows[0].get("n", "?")
        L.append(f"{fmt(float(n), 0) if n != '?' else n} handshaken clients (`bench/idle.sh`, "
                 "`bench/idle.c`) that then only exchange heartbeats (3 s); the server's "
                 "resident memory (VmRSS, all its processes) before the first connect and at the "
                 "end, per connection; its CPU over the idle period.")
        L.append("")
        L.append("| server | transport | connections | RSS bytes per connection | "
                 "server CPU us per connection per s |")
        L.append("|---|---|---|---|---|")
        for kv in idle_rows:
            rss = kv.get("rss_bytes_per_conn")
            cpu = kv.get("cpu_us_per_conn_per_s")
            L.append(f"| {name(kv['server'])} | {kv.get('transport', '?')} | "
                     f"{fmt(float(kv.get('n', 0)), 0)} | "
                     f"{fmt(float(rss), 0) if rss not in (None, '-') else '-'} | "
                     f"{fmt(float(cpu)) if cpu not in (None, '-') else '-'} |")
        L.append("")

    # --- sessions
    ses = read_kv(os.path.join(d, "sessions.txt"), "sessions")
    if ses:
        s = {}
        for p in ses:
            if len(p) >= 5:
                s[p[2]] = (p[3], p[4])
        L.append("## A million sessions in one process")
        L.append("")
        L.append("`bench-sessions` (`bench/sessions.c`): sessions made through the handshake "
                 "and ACK on one `pomelo_server`, no sockets; the library's own cost.")
        L.append("")
        L.append("| figure | value |")
        L.append("|---|---|")
        for key, what, unit in SESSION_ROWS:
            if key in s:
                L.append(f"| {what} | {fmt(float(s[key][1]))} {unit} |")
        n = next(iter(s.values()))[0]
        L.append("")
        L.append(f"N = {fmt(float(n), 0)} sessions; all of `bench-sessions`' figures are in "
                 "its output (`@ sessions` lines).")
        L.append("")

    # --- soak
    soak = os.path.join(d, "soak.txt")
    if os.path.exists(soak):
        with open(soak, encoding="utf-8") as f:
            text = [ln.rstrip("\n") for ln in f if not ln.startswith("@")]
        L.append("## Soak")
        L.append("")
        L.append("`tests/soak.sh` (also a meson test, run by `.ci/run` in both builds): 10,000 "
                 "connections, TCP and WebSocket mixed, 4 generator processes, 100 rooms "
                 "chatting, 200 users leaving and coming back every 2 s, 20 slow consumers that "
                 "stop reading, 2 flooders at 1000 requests/s against a 50/s limit. Its output:")
        L.append("")
        L.append("```")
        L.extend(text)
        L.append("```")
        L.append("")

    # --- targets
    L.append("## Targets (ratios measured in this run)")
    L.append("")
    tgt = []

    def best_real(test, key):
        vals = [med(load, s, test, key) for s in ("pomelo", "pomelo-nodelay")]
        vals = [v for v in vals if v is not None]
        return max(vals) if vals else None

    for test, tr in (("chat-tcp", "TCP"), ("chat-ws", "WS"), ("chat-tcp-w16", "TCP, 16 in flight")):
        ours = med(load, "single", test, "pushes_per_s")
        stock = med(load, "pomelo", test, "pushes_per_s")
        nod = med(load, "pomelo-nodelay", test, "pushes_per_s")
        if ours and stock:
            r = ours / stock
            tgt.append(f"| pushes/s at 100 users ({tr}) vs stock | >= 50x | {ratio(ours, stock)} "
                       f"| {'met' if r >= 50 else 'missed'} |")
        if ours and nod:
            r = ours / nod
            tgt.append(f"| pushes/s at 100 users ({tr}) vs no-delay | >= 10x | "
                       f"{ratio(ours, nod)} | {'met' if r >= 10 else 'missed'} |")
        oc = med(load, "single", test, "server_cpu_s_per_mpush")
        rc = [med(load, s, test, "server_cpu_s_per_mpush") for s in ("pomelo", "pomelo-nodelay")]
        rc = [v for v in rc if v is not None]
        if oc and rc:
            r = min(rc) / oc
            tgt.append(f"| server CPU per million pushes ({tr}), real (its best) / ours | "
                       f">= 100x | {ratio(min(rc), oc)} | {'met' if r >= 100 else 'missed'} |")
    p99 = med(load, "single", "open", "echo_p99_ms")
    if p99 is not None:
        tgt.append(f"| echo p99 at the real server's best sustained rate ({fmt(rate)} sends/s) "
                   f"| < 5 ms | {fmt(p99)} ms | {'met' if p99 < 5 else 'missed'} |")
    for kv in idle_rows:
        if kv["server"] == "chat" and kv.get("rss_bytes_per_conn") not in (None, "-"):
            b = float(kv["rss_bytes_per_conn"])
            tgt.append(f"| RSS per idle connection, {kv.get('transport')} | < 1024 B | "
                       f"{b:,.0f} B | {'met' if b < 1024 else 'missed'} |")
    for t, title in hs_tests:
        o = med(load, "single", t, "handshakes_per_s")
        r = best_real(t, "handshakes_per_s")
        if o and r:
            tgt.append(f"| handshakes/s, {title}, vs the real server's best | >= 10x | "
                       f"{ratio(o, r)} | {'met' if o / r >= 10 else 'missed'} |")
        oc = med(load, "single", t, "server_cpu_us_per_hs")
        rc = [med(load, s, t, "server_cpu_us_per_hs") for s in ("pomelo", "pomelo-nodelay")]
        rc = [v for v in rc if v is not None]
        if oc and rc:
            tgt.append(f"| server CPU per handshake, {title}, real (its best) / ours | "
                       f"(for the above) | {ratio(min(rc), oc)} | |")
    if tgt:
        L.append("| target | wanted | measured | |")
        L.append("|---|---|---|---|")
        L.extend(tgt)
    else:
        L.append("(no real server ran: no ratios)")
    L.append("")
    L.append("## Rerunning")
    L.append("")
    L.append("```sh")
    L.append("bash bench/run.sh                  # all of the above, ~10 minutes; writes this file")
    L.append("LOAD_ROUNDS=5 bash bench/run.sh    # more rounds")
    L.append("bash bench/load.sh                 # the side-by-side chat and handshakes only")
    L.append("build-bench/bench/bench-load --help")
    L.append("IDLE_N=10000 SERVERS='chat real' bash bench/idle.sh")
    L.append("build-bench/bench/bench-sessions --sessions 1000000")
    L.append("bash tests/soak.sh build-bench/examples/pomelo-chat build-bench/bench/bench-load")
    L.append("```")
    L.append("")
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main())
