#!/usr/bin/env python3
"""Tests of the pomelo-client tool (TAP output).

    python3 test_client_cli.py PATH/TO/pomelo-client

Each test starts a tiny TCP server in this process (127.0.0.1, an ephemeral port, a thread)
that speaks raw Pomelo packages built by hand, runs the tool against it with bounded time, and
checks the tool's output lines and exit status: 0 done, 2 usage, 3 cannot connect, 4 handshake
refused, 5 timeout, 6 kicked, 7 connection lost; the script mode (buffered pushes, connect,
sleep with heartbeats) and the route dictionary.
SPDX-License-Identifier: MIT
"""
import json
import socket
import subprocess
import sys
import threading
import time

if len(sys.argv) != 2:
    sys.exit('usage: test_client_cli.py PATH/TO/pomelo-client')
TOOL = sys.argv[1]

count = 0
failed = 0


def ok(cond, name, detail=None):
    global count, failed
    count += 1
    print(('ok' if cond else 'not ok') + ' %d - %s' % (count, name))
    if not cond:
        failed += 1
        if detail is not None:
            for line in str(detail).splitlines()[:30]:
                print('#   ' + line)
    sys.stdout.flush()
    return cond


def is_eq(got, want, name, extra=''):
    return ok(got == want, name, 'got:  %r\nwant: %r\n%s' % (got, want, extra))


# ---------------------------------------------------------------------------------------------
# Packages and messages, by hand (spec sections 1 and 2)

HANDSHAKE, ACK, HEARTBEAT, DATA, KICK = 1, 2, 3, 4, 5
HS_OK = b'{"code":200,"sys":{"heartbeat":1}}'
CHAT_DICT = {'chat.chatHandler.send': 1, 'connector.entryHandler.enter': 2,
             'gate.gateHandler.queryEntry': 3}


def pkg(t, body=b''):
    if isinstance(body, str):
        body = body.encode('utf-8')
    n = len(body)
    return bytes([t, n >> 16 & 255, n >> 8 & 255, n & 255]) + body


def varint(v):
    out = b''
    while True:
        b = v & 0x7f
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def response(mid, body):
    if isinstance(body, str):
        body = body.encode('utf-8')
    return pkg(DATA, bytes([0x04]) + varint(mid) + body)


def push(route, body, code=None):
    if isinstance(body, str):
        body = body.encode('utf-8')
    if code is not None:
        return pkg(DATA, bytes([0x07, code >> 8, code & 255]) + body)
    r = route.encode('utf-8')
    return pkg(DATA, bytes([0x06, len(r)]) + r + body)


def decode_msg(b):
    """A client message: (type, id, route or code, body)."""
    flag = b[0]
    mtype = (flag >> 1) & 7
    pos, mid = 1, 0
    if mtype == 0:
        shift = 0
        while True:
            c = b[pos]
            pos += 1
            mid |= (c & 0x7f) << shift
            shift += 7
            if not c & 0x80:
                break
    if flag & 1:
        route = b[pos] << 8 | b[pos + 1]
        pos += 2
    else:
        n = b[pos]
        route = b[pos + 1:pos + 1 + n].decode('utf-8')
        pos += 1 + n
    return mtype, mid, route, b[pos:]


class Peer:
    """One accepted connection, read package by package; heartbeats are echoed and counted."""

    def __init__(self, sock):
        self.s = sock
        self.s.settimeout(8)
        self.buf = b''
        self.heartbeats = 0
        self.hs = None

    def read_pkg(self):
        while True:
            if len(self.buf) >= 4:
                n = self.buf[1] << 16 | self.buf[2] << 8 | self.buf[3]
                if len(self.buf) >= 4 + n:
                    t, body = self.buf[0], self.buf[4:4 + n]
                    self.buf = self.buf[4 + n:]
                    return t, body
            try:
                chunk = self.s.recv(65536)
            except (socket.timeout, OSError):
                return None, None
            if not chunk:
                return None, None
            self.buf += chunk

    def send(self, data):
        try:
            self.s.sendall(data)
        except OSError:
            pass

    def handshake(self, answer=HS_OK, first_heartbeat=True):
        t, body = self.read_pkg()
        if t != HANDSHAKE:
            raise RuntimeError('expected a handshake, got %r' % t)
        self.hs = json.loads(body)
        self.send(pkg(HANDSHAKE, answer))
        if json.loads(answer).get('code') != 200:
            return False
        t, _ = self.read_pkg()
        if t != ACK:
            raise RuntimeError('expected the ACK, got %r' % t)
        if first_heartbeat:
            self.send(pkg(HEARTBEAT))  # as the real server does right after the ACK
        return True

    def next_msg(self):
        """The next DATA message (heartbeats echoed on the way), or None at the end."""
        while True:
            t, body = self.read_pkg()
            if t is None:
                return None
            if t == HEARTBEAT:
                self.heartbeats += 1
                self.send(pkg(HEARTBEAT))
            elif t == DATA:
                return decode_msg(body)

    def drain(self):
        """Echoes heartbeats until the client closes."""
        while self.next_msg() is not None:
            pass

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Server:
    """Listens on 127.0.0.1:0 and runs handler(peer, server) for each connection in a thread."""

    def __init__(self, handler, connections=1):
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.bind(('127.0.0.1', 0))
        self.ls.listen(8)
        self.ls.settimeout(10)
        self.port = self.ls.getsockname()[1]
        self.handler = handler
        self.errors = []
        self.record = {}
        self.thread = threading.Thread(target=self.run, args=(connections,), daemon=True)
        self.thread.start()

    def run(self, connections):
        for _ in range(connections):
            try:
                sock, _ = self.ls.accept()
            except OSError:
                return
            peer = Peer(sock)
            try:
                self.handler(peer, self)
            except Exception as e:  # reported by the test
                self.errors.append(repr(e))
            finally:
                peer.close()

    def finish(self):
        self.thread.join(10)
        self.ls.close()
        return self.errors


def tool(args, stdin=b'', timeout=30):
    t0 = time.time()
    p = subprocess.run([TOOL] + args, input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return (p.returncode, p.stdout.decode('utf-8', 'replace').splitlines(),
            p.stderr.decode('utf-8', 'replace'), time.time() - t0)


def at(srv):
    return ['--host', '127.0.0.1', '--port', str(srv.port)]


# ---------------------------------------------------------------------------------------------
# One-shot commands

def test_request():
    def handler(peer, srv):
        peer.handshake()
        srv.record['hs'] = peer.hs
        srv.record['msg'] = peer.next_msg()
        mtype, mid, route, body = srv.record['msg']
        peer.send(push('onNoise', '{}'))  # ignored by a one-shot request
        peer.send(response(mid, b'{ "code" : 200, "msg" : "hi", "n": [1, 2.50] }'))
        peer.drain()

    srv = Server(handler)
    rc, out, err, _ = tool(at(srv) + ['--user', '{ "uid" : "alice" }', 'request',
                                      'connector.entryHandler.enter', '{ "a" : 1 }'])
    errors = srv.finish()
    is_eq(rc, 0, 'request: exit 0', err)
    is_eq(out, ['{"code":200,"msg":"hi","n":[1,2.50]}'],
          'request: the response body as one compact line')
    hs = srv.record.get('hs') or {}
    is_eq(hs.get('user'), {'uid': 'alice'}, '--user is the handshake user object')
    is_eq((hs.get('sys') or {}).get('type'), 'pomelo-client', 'sys.type names the tool')
    is_eq(srv.record.get('msg'), (0, 1, 'connector.entryHandler.enter', b'{"a":1}'),
          'request on the wire: id 1, route, compact body')
    is_eq(errors, [], 'request: server side fine')


def test_request_bodies():
    bodies = [(b'', '{}'), (b'plain text', '"plain text"'), (b'\xff{"x"', '"\ufffd{\\"x\\""'),
              (b'[1,true,null]', '[1,true,null]')]

    def handler(peer, srv):
        peer.handshake()
        _, mid, _, _ = peer.next_msg()
        peer.send(response(mid, srv.record['body']))
        peer.drain()

    for body, want in bodies:
        srv = Server(handler)
        srv.record['body'] = body
        rc, out, err, _ = tool(at(srv) + ['request', 'a.b.c'])
        srv.finish()
        is_eq((rc, out), (0, [want]), 'response body %r printed as %s' % (body, want), err)


def test_notify():
    def handler(peer, srv):
        peer.handshake()
        srv.record['msg'] = peer.next_msg()
        peer.drain()

    srv = Server(handler)
    rc, out, err, elapsed = tool(at(srv) + ['notify', 'chat.chatHandler.send', '{"content":"x"}'])
    errors = srv.finish()
    is_eq((rc, out), (0, []), 'notify: exit 0, nothing printed', err)
    is_eq(srv.record.get('msg'), (1, 0, 'chat.chatHandler.send', b'{"content":"x"}'),
          'notify on the wire')
    ok(elapsed < 5, 'notify exits once written (%.2f s)' % elapsed)
    is_eq(errors, [], 'notify: server side fine')


def test_listen():
    def handler(peer, srv):
        peer.handshake()
        peer.send(push('onChat', '{"msg":"hello", "from":"bob"}'))
        peer.send(push('onText', 'not json'))
        peer.send(push('onEmpty', ''))
        peer.drain()

    srv = Server(handler)
    rc, out, err, elapsed = tool(at(srv) + ['listen', '1.5'])
    srv.finish()
    is_eq(rc, 0, 'listen SEC: exit 0', err)
    is_eq(out, ['{"route":"onChat","body":{"msg":"hello","from":"bob"}}',
                '{"route":"onText","body":"not json"}',
                '{"route":"onEmpty","body":{}}'], 'listen: one line per push')
    ok(1.4 < elapsed < 6, 'listen 1.5 lasts 1.5 s (%.2f s)' % elapsed)


def test_dictionary():
    hs = json.dumps({'code': 200, 'sys': {
        'heartbeat': 1, 'dict': CHAT_DICT, 'routeToCode': CHAT_DICT,
        'codeToRoute': {str(v): k for k, v in CHAT_DICT.items()},
        'dictVersion': 's2r1qfKDrbhWCkA6uf+PTA==', 'useDict': True}}, separators=(',', ':'))

    def handler(peer, srv):
        peer.handshake(hs.encode())
        srv.record['msg'] = peer.next_msg()
        _, mid, _, _ = srv.record['msg']
        peer.send(push(None, '{"user":"bob"}', code=3))
        peer.send(push(None, '{}', code=77))
        peer.send(response(mid, '{"code":200}'))
        srv.record['msg2'] = peer.next_msg()
        peer.drain()

    srv = Server(handler)
    script = b'request connector.entryHandler.enter {"username":"alice"}\n' \
             b'wait gate.gateHandler.queryEntry 2\nwait 77 2\nnotify chat.chatHandler.send\n'
    rc, out, err, _ = tool(at(srv) + ['script'], script)
    errors = srv.finish()
    is_eq(rc, 0, 'dictionary: exit 0', err)
    is_eq(srv.record.get('msg'), (0, 1, 2, b'{"username":"alice"}'),
          'a route in the dictionary goes compressed (code 2)')
    is_eq(srv.record.get('msg2'), (1, 0, 1, b'{}'), 'a notify too (code 1)')
    is_eq(out, ['{"code":200}', '{"route":"gate.gateHandler.queryEntry","body":{"user":"bob"}}',
                '{"route":"77","body":{}}'],
          'compressed pushes resolved; an unknown code as its digits')
    is_eq(errors, [], 'dictionary: server side fine')


# ---------------------------------------------------------------------------------------------
# Exit codes

def test_usage():
    for args, name in [([], 'no command'), (['frobnicate'], 'unknown command'),
                       (['--bogus', 'listen'], 'unknown option'),
                       (['request'], 'request without a route'),
                       (['request', 'a.b.c', '{bad json'], 'invalid JSON body'),
                       (['--user', '{', 'listen'], 'invalid --user'),
                       (['--port', '70000', 'listen'], 'bad port'),
                       (['--timeout', 'x', 'listen'], 'bad timeout'),
                       (['listen', '1', '2'], 'listen with two arguments'),
                       (['script', 'extra'], 'script with an argument')]:
        rc, out, err, _ = tool(args)
        ok(rc == 2 and 'pomelo-client:' in err, 'usage error: %s -> 2' % name,
           'rc %r, stderr %r' % (rc, err))
    rc, out, err, _ = tool(['--help'])
    ok(rc == 0 and any('EXIT STATUS' in line for line in out) and
       any('6  kicked' in line for line in out), '--help documents the exit codes')
    rc, out, err, _ = tool(['--version'])
    ok(rc == 0 and out and out[0].startswith('pomelo-client (libpomelo) '), '--version')


def closed_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_ws():
    rc, out, err, _ = tool(['--ws', '--port', str(closed_port()), 'request', 'a.b.c'])
    if rc == 2:
        ok('WebSocket is not supported yet' in err, '--ws without the transport: a clear error',
           err)
    else:
        is_eq(rc, 3, '--ws with the transport: a closed port cannot connect', err)


def test_cannot_connect():
    port = closed_port()
    rc, out, err, _ = tool(['--port', str(port), 'request', 'a.b.c'])
    ok(rc == 3 and 'cannot connect' in err, 'connection refused -> 3', 'rc %r, %r' % (rc, err))
    rc, out, err, _ = tool(['--host', 'no-such-host.invalid', 'listen'])
    ok(rc == 3, 'unknown host -> 3', 'rc %r, %r' % (rc, err))
    rc, out, err, _ = tool(['--port', str(port), 'script'], b'# nothing\n\n')
    is_eq(rc, 0, 'a script that never connects: 0', err)


def test_refused():
    for code in (500, 501):
        def handler(peer, srv, code=code):
            peer.handshake(('{"code":%d}' % code).encode())
            peer.drain()

        srv = Server(handler)
        rc, out, err, _ = tool(at(srv) + ['request', 'a.b.c'])
        srv.finish()
        ok(rc == 4 and ('code %d' % code) in err, 'handshake refused with %d -> 4, code printed'
           % code, 'rc %r, %r' % (rc, err))


def test_timeout():
    def handler(peer, srv):
        peer.handshake()
        peer.next_msg()  # never answered
        peer.drain()

    srv = Server(handler)
    rc, out, err, elapsed = tool(at(srv) + ['--timeout', '1', 'request', 'a.b.c'])
    srv.finish()
    ok(rc == 5 and 'a.b.c' in err, 'unanswered request with --timeout 1 -> 5', 'rc %r, %r' %
       (rc, err))
    ok(0.9 < elapsed < 5, 'after about a second (%.2f s)' % elapsed)

    def silent(peer, srv):
        peer.read_pkg()  # the handshake, never answered
        peer.read_pkg()

    srv = Server(silent)
    rc, out, err, elapsed = tool(at(srv) + ['--timeout', '0.5', 'listen'])
    srv.finish()
    ok(rc == 5 and elapsed < 5, 'unanswered handshake -> 5 (%.2f s)' % elapsed, err)


def test_kick():
    def handler(peer, srv):
        peer.handshake()
        peer.next_msg()
        peer.send(pkg(KICK, '{"reason":"bye now"}'))
        peer.drain()

    srv = Server(handler)
    rc, out, err, _ = tool(at(srv) + ['request', 'a.b.c'])
    srv.finish()
    ok(rc == 6 and 'kicked: bye now' in err, 'kick -> 6, reason printed', 'rc %r, %r' % (rc, err))


def test_lost():
    def handler(peer, srv):
        peer.handshake()
        peer.next_msg()
        peer.close()  # closes without answering

    srv = Server(handler)
    rc, out, err, _ = tool(at(srv) + ['request', 'a.b.c'])
    srv.finish()
    ok(rc == 7 and 'connection lost' in err, 'server closes -> 7', 'rc %r, %r' % (rc, err))


# ---------------------------------------------------------------------------------------------
# Script mode

def test_script_buffering():
    def handler(peer, srv):
        peer.handshake()
        _, mid, route, _ = peer.next_msg()
        # As chatofpomelo does: the push caused by a request comes before its response.
        peer.send(push('onAdd', '{"user":"alice"}'))
        peer.send(push('onOther', '{"n":1}'))
        peer.send(push('onAdd', '{"user":"carol"}'))
        peer.send(response(mid, '{"code":200,"users":["bob"]}'))
        _, mid, route, body = peer.next_msg()
        srv.record['second'] = (route, body)
        peer.send(response(mid, '{"ok":true}'))
        peer.drain()

    srv = Server(handler)
    script = ('# walk through a connector\n'
              'connect 127.0.0.1 %d tcp\n'
              'request connector.entryHandler.enter {"username": "alice", "rid": "r1"}\n'
              '\n'
              'wait onAdd\n'
              'request chat.chatHandler.send {"content":"hi"}\n'
              'wait onOther 2\n'
              'wait onAdd 2\n'
              'close\n' % srv.port).encode()
    rc, out, err, _ = tool(['--port', str(closed_port()), 'script'], script)
    errors = srv.finish()
    is_eq(rc, 0, 'script: exit 0', err)
    is_eq(out, ['{"code":200,"users":["bob"]}', '{"route":"onAdd","body":{"user":"alice"}}',
                '{"ok":true}', '{"route":"onOther","body":{"n":1}}',
                '{"route":"onAdd","body":{"user":"carol"}}'],
          'pushes that came before their wait are kept, in order, per route')
    is_eq(srv.record.get('second'), ('chat.chatHandler.send', b'{"content":"hi"}'),
          'the second request')
    is_eq(errors, [], 'script: server side fine')


def test_script_auto_connect_and_errors():
    def handler(peer, srv):
        peer.handshake()
        peer.drain()

    srv = Server(handler)
    rc, out, err, elapsed = tool(at(srv) + ['script'], b'wait onNever 0.5\n')
    srv.finish()
    ok(rc == 5 and 'onNever' in err and elapsed < 5,
       'wait with no push: auto-connect to --host/--port, then 5', 'rc %r, %r' % (rc, err))

    srv = Server(handler)
    rc, out, err, _ = tool(at(srv) + ['script'], b'sleep 0.1\nfly away\n')
    srv.finish()
    ok(rc == 2 and 'line 2' in err, 'unknown script command -> 2 with its line', err)

    srv = Server(handler)
    rc, out, err, _ = tool(at(srv) + ['script'], b'connect 127.0.0.1 %d\nclose\nrequest a.b.c\n'
                           % srv.port)
    srv.finish()
    ok(rc == 2 and 'not connected' in err, 'request after close -> 2', err)

    rc, out, err, _ = tool(['script'], b'connect 127.0.0.1 %d\n' % closed_port())
    ok(rc == 3, 'script connect to a closed port -> 3', err)


def test_script_gate_connector():
    def connector(peer, srv):
        peer.handshake()
        _, mid, route, body = peer.next_msg()
        srv.record['enter'] = route
        peer.send(response(mid, '{"code":200}'))
        peer.send(push('onAdd', '{"user":"alice"}'))
        peer.drain()

    conn_srv = Server(connector)

    def gate(peer, srv):
        peer.handshake(b'{"code":200,"sys":{}}', first_heartbeat=False)  # a gate: no heartbeat
        _, mid, route, body = peer.next_msg()
        peer.send(response(mid, '{"code":200,"host":"127.0.0.1","port":%d}' % conn_srv.port))
        peer.drain()

    gate_srv = Server(gate)
    script = ('connect 127.0.0.1 %d\nrequest gate.gateHandler.queryEntry {"uid":"alice"}\n'
              'connect 127.0.0.1 %d\nrequest connector.entryHandler.enter {"username":"alice"}\n'
              'wait onAdd\n' % (gate_srv.port, conn_srv.port)).encode()
    rc, out, err, _ = tool(['script'], script)
    errors = gate_srv.finish() + conn_srv.finish()
    is_eq(rc, 0, 'gate then connector: exit 0', err)
    is_eq(out, ['{"code":200,"host":"127.0.0.1","port":%d}' % conn_srv.port, '{"code":200}',
                '{"route":"onAdd","body":{"user":"alice"}}'], 'gate, connector, push')
    is_eq(errors, [], 'both servers fine')


def test_script_heartbeats():
    def handler(peer, srv):
        peer.handshake()
        peer.drain()
        srv.record['hb'] = peer.heartbeats

    srv = Server(handler)
    rc, out, err, elapsed = tool(['-v', 'script'],
                                 b'connect 127.0.0.1 %d\nsleep 2.5\nclose\n' % srv.port)
    srv.finish()
    is_eq(rc, 0, 'sleep: exit 0', err)
    hb = srv.record.get('hb', 0)
    ok(2 <= hb <= 3, 'heartbeat 1: the client sent %d heartbeats during sleep 2.5' % hb)
    ok(2.4 < elapsed < 8, 'sleep 2.5 lasted %.2f s' % elapsed)
    ok('handshake accepted' in err and 'disconnected: local' in err,
       '-v prints protocol events on stderr', err)

    def kicker(peer, srv):
        peer.handshake()
        time.sleep(0.3)
        peer.send(pkg(KICK, '{"reason":"maintenance"}'))
        peer.drain()

    srv = Server(kicker)
    rc, out, err, elapsed = tool(at(srv) + ['script'], b'wait onX 0\n')
    srv.finish()
    ok(rc == 6 and 'maintenance' in err and elapsed < 5, 'kick during a wait -> 6', err)

    srv = Server(kicker)
    rc, out, err, elapsed = tool(at(srv) + ['listen'])
    srv.finish()
    ok(rc == 6 and elapsed < 5, 'kick during listen -> 6', err)


def main():
    test_request()
    test_request_bodies()
    test_notify()
    test_listen()
    test_dictionary()
    test_usage()
    test_ws()
    test_cannot_connect()
    test_refused()
    test_timeout()
    test_kick()
    test_lost()
    test_script_buffering()
    test_script_auto_connect_and_errors()
    test_script_gate_connector()
    test_script_heartbeats()
    print('1..%d' % count)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
