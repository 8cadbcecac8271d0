#!/usr/bin/env python3
"""Tests of the pomelo-dump tool (TAP output).

    python3 test_dump.py PATH/TO/pomelo-dump

Checks lines written by hand from the spec's vectors, the recorded traces and the example
captures (dump, then --encode, must give the input bytes back), route names and protobuf bodies
decoded with --handshake, --dict, --server-protos/--client-protos (tests/data/dump-*.json) and
with the handshake answers found in the stream, and the error cases (exit status 1 with the
offset, 2 for usage errors and unusable dictionary or proto files). Data paths are found from
this file's location.
SPDX-License-Identifier: MIT
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TRACES = os.path.join(ROOT, 'tests', 'data')
EXAMPLES = os.path.join(ROOT, 'examples', 'data')

if len(sys.argv) != 2:
    sys.exit('usage: test_dump.py PATH/TO/pomelo-dump')
DUMP = sys.argv[1]

count = 0
failed = 0


def ok(cond, name, detail=None):
    global count, failed
    count += 1
    print(('ok' if cond else 'not ok') + ' %d - %s' % (count, name))
    if not cond:
        failed += 1
        if detail is not None:
            for line in str(detail).splitlines()[:20]:
                print('#   ' + line)
    sys.stdout.flush()
    return cond


def is_eq(got, want, name):
    return ok(got == want, name, 'got:  %r\nwant: %r' % (got, want))


def run(args, data=b''):
    if isinstance(data, str):
        data = data.encode('utf-8')
    p = subprocess.run([DUMP] + args, input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    return p.returncode, p.stdout, p.stderr.decode('utf-8', 'replace')


def data_package(msg_hex):
    msg = bytes.fromhex(msg_hex)
    return bytes([4, len(msg) >> 16 & 255, len(msg) >> 8 & 255, len(msg) & 255]) + msg


def read_trace(name):
    """The whole packages of a trace file, in order: a list of (label, direction, bytes)."""
    out = []
    with open(os.path.join(TRACES, name), encoding='utf-8') as f:
        for line in f:
            t = line.split()
            if not t or line.startswith('#'):
                continue
            h = t[-1]
            if len(h) < 8 or len(h) % 2 or any(c not in '0123456789abcdef' for c in h):
                continue
            b = bytes.fromhex(h)
            if len(b) < 4 + (b[1] << 16 | b[2] << 8 | b[3]):
                continue  # cut short by the recorder (tmpl-ws.txt)
            label = ' '.join(t[:2]) if len(t) == 6 else t[0]
            direction = t[2] if len(t) == 6 else (t[0] if t[0] in ('c2s', 's2c') else '')
            out.append((label, direction, b))
    return out


# ---------------------------------------------------------------------------------------------
# Lines written by hand from spec Appendix A

ALICE = '7b22757365726e616d65223a22616c696365222c22726964223a22726f6f6d31227d'
VECTORS = [
    ('PK1', '02000000', '{"offset":0,"package":"handshake_ack","body":""}'),
    ('PK2', '03000000', '{"offset":0,"package":"heartbeat","body":""}'),
    ('PK3', '050000117b22726561736f6e223a226b69636b227d',
     r'{"offset":0,"package":"kick","body":"{\"reason\":\"kick\"}"}'),
    ('PK5', '0100000c7b22636f6465223a3530317d',
     r'{"offset":0,"package":"handshake","body":"{\"code\":501}"}'),
    ('MS1', data_package('00011c636f6e6e6563746f722e656e74727948616e646c65722e656e746572' +
                         ALICE).hex(),
     r'{"offset":0,"package":"data","message":"request","id":1,'
     r'"route":"connector.entryHandler.enter","body":"{\"username\":\"alice\",\"rid\":\"room1\"}"}'),
    ('MS2', data_package('01010002' + ALICE).hex(),
     r'{"offset":0,"package":"data","message":"request","id":1,"route_code":2,'
     r'"body":"{\"username\":\"alice\",\"rid\":\"room1\"}"}'),
    ('MS3', data_package('01ac0200017b7d').hex(),
     '{"offset":0,"package":"data","message":"request","id":300,"route_code":1,"body":"{}"}'),
    ('MS4', data_package('0215636861742e6368617448616e646c65722e73656e647b7d').hex(),
     '{"offset":0,"package":"data","message":"notify","route":"chat.chatHandler.send",'
     '"body":"{}"}'),
    ('MS5', data_package('04017b22636f6465223a3230307d').hex(),
     r'{"offset":0,"package":"data","message":"response","id":1,"body":"{\"code\":200}"}'),
    ('MS7', data_package('07000d').hex(),
     '{"offset":0,"package":"data","message":"push","route_code":13,"body":""}'),
    ('MS8', data_package('06066f6e4368617478').replace(b'\x06\x06', b'\x16\x06', 1).hex(),
     '{"offset":0,"package":"data","message":"push","route":"onChat","gzip":true,"body":"x"}'),
    ('MS9', data_package('000500').hex(),
     '{"offset":0,"package":"data","message":"request","id":5,"route":"","body":""}'),
    ('ID 2147483647', data_package('00ffffffff0700').hex(),
     '{"offset":0,"package":"data","message":"request","id":2147483647,"route":"","body":""}'),
    ('FR1 (protobuf body that is valid UTF-8)',
     '0400001606066f6e436861740a0268691205616c6963651a012a',
     r'{"offset":0,"package":"data","message":"push","route":"onChat",'
     r'"body":"\n\u0002hi\u0012\u0005alice\u001a\u0001*"}'),
    ('binary body', data_package('0600fffe80').hex(),
     '{"offset":0,"package":"data","message":"push","route":"","body_hex":"fffe80"}'),
    ('non-UTF-8 route', data_package('0602fffe').hex(),
     '{"offset":0,"package":"data","message":"push","route_hex":"fffe","body":""}'),
    ('CESU-8 surrogate body is not UTF-8', '03000003eda080',
     '{"offset":0,"package":"heartbeat","body_hex":"eda080"}'),
    ('4-byte UTF-8 route and body', data_package('0604f09f9880f09f9880').hex(),
     '{"offset":0,"package":"data","message":"push","route":"\U0001F600","body":"\U0001F600"}'),
]


def test_vectors():
    all_hex, all_lines, offset = [], [], 0
    for tag, hexline, want in VECTORS:
        rc, out, err = run(['--hex'], hexline + '\n')
        is_eq((rc, out.decode('utf-8'), err), (0, want + '\n', ''), 'dump %s' % tag)
        rc, out, err = run(['--encode', '--hex'], want + '\n')
        is_eq((rc, out.decode(), err), (0, hexline + '\n', ''), 'encode %s' % tag)
        all_hex.append(hexline)
        o = json.loads(want)
        o['offset'] = offset
        all_lines.append(json.dumps(o, separators=(',', ':'), ensure_ascii=False))
        offset += len(hexline) // 2
    # All of them in one input: offsets add up; the raw stream gives the same lines.
    want = '\n'.join(all_lines) + '\n'
    rc, out, err = run(['--hex'], '\n'.join(all_hex) + '\n')
    is_eq((rc, out.decode('utf-8')), (0, want), 'all vectors as hex lines: offsets add up')
    raw = bytes.fromhex(''.join(all_hex))
    rc, out, err = run([], raw)
    is_eq((rc, out.decode('utf-8')), (0, want), 'all vectors as a raw stream')
    rc, back, err = run(['--encode'], out)
    ok(rc == 0 and back == raw, 'all vectors: --encode gives the raw stream back', err)


# ---------------------------------------------------------------------------------------------
# The example captures and the recorded traces

def test_examples():
    s2c = os.path.join(EXAMPLES, 'chat-s2c.bin')
    c2s = os.path.join(EXAMPLES, 'chat-c2s.bin')
    trace = [p for p in read_trace('chat-tcp.txt') if p[0] == 'carol@connector tcp']
    for path, direction in ((c2s, 'c2s'), (s2c, 's2c')):
        with open(path, 'rb') as f:
            raw = f.read()
        want = b''.join(p[2] for p in trace if p[1] == direction)
        is_eq(raw, want, '%s is carol@connector %s of chat-tcp.txt' % (os.path.basename(path),
                                                                       direction))
        rc, out, err = run([path])
        lines = out.decode('utf-8').splitlines()
        ok(rc == 0 and len(lines) == sum(1 for p in trace if p[1] == direction),
           'dump %s: one line per package' % os.path.basename(path), err)
        rc2, out2, _ = run([], raw)
        ok(rc2 == 0 and out2 == out, 'dump %s from standard input: same lines' %
           os.path.basename(path))
        rc2, out2, _ = run(['-'], raw)
        ok(rc2 == 0 and out2 == out, 'dump - (standard input): same lines')
        rc, back, err = run(['--encode'], out)
        ok(rc == 0 and back == raw, 'encode(dump(%s)) gives the file back' %
           os.path.basename(path), err)
        with tempfile.TemporaryDirectory() as d:
            o = os.path.join(d, 'out.jsonl')
            rc, out3, err = run(['-o', o, path])
            with open(o, 'rb') as f:
                ok(rc == 0 and out3 == b'' and f.read() == out, '-o FILE writes the same lines')
            rc, _, err = run(['--encode', '--output=' + os.path.join(d, 'x.bin')], out)
            with open(os.path.join(d, 'x.bin'), 'rb') as f:
                ok(rc == 0 and f.read() == raw, '--encode --output=FILE writes the bytes')
    rc, out, err = run([s2c])
    lines = out.decode('utf-8').splitlines()
    is_eq(lines[1], '{"offset":733,"package":"heartbeat","body":""}', 'chat-s2c.bin heartbeat')
    is_eq(lines[2], r'{"offset":737,"package":"data","message":"response","id":1,'
          r'"body":"{\"users\":[\"carol\"]}"}', 'chat-s2c.bin first response')
    is_eq(lines[3], r'{"offset":762,"package":"data","message":"push","route":"onAdd",'
          r'"body":"{\"route\":\"onAdd\",\"user\":\"dave\"}"}', 'chat-s2c.bin onAdd push')
    rc, out, err = run([c2s])
    lines = out.decode('utf-8').splitlines()
    is_eq(lines[2], r'{"offset":83,"package":"data","message":"request","id":1,"route_code":2,'
          r'"body":"{\"username\":\"carol\",\"rid\":\"room2\"}"}', 'chat-c2s.bin enter request')


def test_traces():
    for name in ('chat-ws.txt', 'chat-tcp.txt', 'tmpl-ws.txt', 'handshake-responses.hex'):
        pkgs = read_trace(name)
        hexlines = ''.join(p[2].hex() + '\n' for p in pkgs)
        rc, out, err = run(['--hex'], hexlines)
        lines = out.decode('utf-8').splitlines()
        ok(rc == 0 and len(lines) == len(pkgs), '%s: %d packages dumped from hex lines' %
           (name, len(pkgs)), err)
        offset, good = 0, True
        for (label, direction, b), line in zip(pkgs, lines):
            o = json.loads(line)
            good = good and o['offset'] == offset and list(o)[:2] == ['offset', 'package']
            offset += len(b)
        ok(good, '%s: offsets add up' % name)
        rc, back, err = run(['--encode', '--hex'], out)
        ok(rc == 0 and back.decode() == hexlines, '%s: --encode --hex gives the lines back' % name,
           err)
        raw = b''.join(p[2] for p in pkgs)
        rc, out_raw, err = run([], raw)
        ok(rc == 0 and out_raw == out, '%s: the raw stream dumps the same' % name, err)
        rc, back, err = run(['--encode'], out_raw)
        ok(rc == 0 and back == raw, '%s: --encode gives the raw stream back' % name, err)
        if name != 'tmpl-ws.txt':
            rc, out_trace, err = run(['--trace', os.path.join(TRACES, name)])
            ok(rc == 0 and out_trace == out, '%s: --trace reads the file as it is' % name, err)
    # tmpl-ws.txt's first line was cut short by its recorder: --trace reports it.
    rc, out, err = run(['--trace', os.path.join(TRACES, 'tmpl-ws.txt')])
    is_eq((rc, out, err.strip()),
          (1, b'', 'pomelo-dump: offset 0: line 1: truncated handshake package: the input ends '
           'after 60 of its 79 bytes'), '--trace tmpl-ws.txt: the cut-short line is an error')


def test_line_formats():
    text = ('# a comment\n\n   \n  02 00 00 00  \r\n\t03000000\n'
            '# several packages on one line\n0300000003000000\n050000027B7D\n')
    rc, out, err = run(['--hex'], text)
    want = ['{"offset":0,"package":"handshake_ack","body":""}',
            '{"offset":4,"package":"heartbeat","body":""}',
            '{"offset":8,"package":"heartbeat","body":""}',
            '{"offset":12,"package":"heartbeat","body":""}',
            '{"offset":16,"package":"kick","body":"{}"}']
    is_eq((rc, out.decode().splitlines(), err), (0, want, ''),
          '--hex: blanks, comments, CRLF, spaces between bytes, upper case, several per line')
    enc = ('# comment\n\n{"package":"heartbeat"}\n  {"body":"{}","package":"kick"}\n'
           '{"package":"data","message":"push","route":"a","gzip":false}\n'
           '{"offset":999,"package":"data","message":"response","id":7,"body_hex":"FF00"}\n')
    rc, out, err = run(['--encode', '--hex'], enc)
    is_eq((rc, out.decode().splitlines(), err),
          (0, ['03000000', '050000027b7d', '04000003060161', '040000040407ff00'], ''),
          '--encode: optional offset/body/gzip, any key order, comments, upper-case body_hex')
    for mode in ([], ['--hex'], ['--trace'], ['--encode'], ['--encode', '--hex']):
        rc, out, err = run(mode, b'')
        is_eq((rc, out, err), (0, b'', ''), 'empty input %s: no output, exit 0' % ' '.join(mode))


def test_large_stream():
    # Packages across several 64 KiB read chunks, one of them larger than a chunk.
    pkgs = [data_package('0601' + '61' + ('%02x' % (i % 256)) * 1000) for i in range(150)]
    pkgs.insert(70, data_package('0401' + 'ab' * 149997))  # a response, 149999-byte message
    raw = b''.join(pkgs)
    rc, out, err = run([], raw)
    lines = out.decode().splitlines()
    ok(rc == 0 and len(lines) == len(pkgs), 'raw stream of %d bytes over 64 KiB chunks: %d lines'
       % (len(raw), len(pkgs)), err)
    o = json.loads(lines[70])
    ok(o.get('body_hex') == 'ab' * 149997 and o['offset'] == sum(len(p) for p in pkgs[:70]),
       'the 150 KB package is whole, at the right offset')
    rc, back, err = run(['--encode'], out)
    ok(rc == 0 and back == raw, 'large stream: --encode gives it back', err)
    rc, out, err = run(['--limit', '149999'], raw)
    ok(rc == 0, '--limit 149999 accepts a 149999-byte body', err)
    rc, out, err = run(['--limit', '149998'], raw)
    is_eq((rc, err.strip()), (1, 'pomelo-dump: offset %d: data package declares a body of 149999 '
                              'bytes, over the limit of 149998 (see --limit)' %
                              sum(len(p) for p in pkgs[:70])), '--limit 149998 refuses it')


# ---------------------------------------------------------------------------------------------
# Errors

def expect_error(args, data, want_err, name, want_out=None, status=1):
    rc, out, err = run(args, data)
    err = err.strip()
    good = rc == status and (err == want_err if isinstance(want_err, str) else want_err(err))
    if want_out is not None:
        good = good and out.decode() == want_out
    ok(good, name, 'exit %d, stderr: %s\nstdout: %r' % (rc, err, out[:300]))


def test_errors():
    with open(os.path.join(EXAMPLES, 'chat-s2c.bin'), 'rb') as f:
        s2c = f.read()
    _, full, _ = run([], s2c)
    full_lines = full.decode().splitlines(True)
    expect_error([], s2c[:-1], 'pomelo-dump: offset 852: truncated data package: the input ends '
                 'after 7 of its 8 bytes', 'truncated last package: exit 1, its offset',
                 ''.join(full_lines[:-1]))
    expect_error([], s2c + b'\x04\x00', 'pomelo-dump: offset 860: truncated package: the input '
                 'ends inside the 4-byte header (2 of 4 bytes)', 'truncated header')
    expect_error([], s2c[:700], 'pomelo-dump: offset 0: truncated handshake package: the input '
                 'ends after 700 of its 733 bytes', 'truncated first package', '')
    expect_error([], s2c + b'\x06\x00\x00\x00', 'pomelo-dump: offset 860: unknown package type '
                 '0x06 (the types are 1 to 5)', 'bad type byte after good packages', full.decode())
    expect_error([], b'\x00\x00\x00\x00', 'pomelo-dump: offset 0: unknown package type 0x00 '
                 '(the types are 1 to 5)', 'type byte 0')
    expect_error([], bytes.fromhex('0400000108'), 'pomelo-dump: offset 0: bad message in a data '
                 'package: invalid message type (types 4 to 7 do not exist)', 'message type 4')
    expect_error([], bytes.fromhex('03000000' '0400000300000000'),
                 'pomelo-dump: offset 4: bad message in a data package: message id out of range '
                 '(1 to 2^31-1, at most 5 varint bytes)', 'request id 0',
                 '{"offset":0,"package":"heartbeat","body":""}\n')
    expect_error([], bytes.fromhex('040000020001'), 'pomelo-dump: offset 0: bad message in a data '
                 'package: message ends inside its header', 'request without a route')
    expect_error(['--limit', '100'], s2c, 'pomelo-dump: offset 0: handshake package declares a '
                 'body of 729 bytes, over the limit of 100 (see --limit)', 'body over --limit')
    # --hex input
    expect_error(['--hex'], '03000000\n  zz\n', 'pomelo-dump: offset 4: line 2, column 3: bad '
                 'hex: not a hex digit', 'bad hex digit: line and column')
    expect_error(['--hex'], '0300000\n', 'pomelo-dump: offset 0: line 1, column 7: bad hex: odd '
                 'number of hex digits (a byte is two digits)', 'odd number of hex digits')
    expect_error(['--hex'], '03 0 000000\n', lambda e: 'line 1, column 4: bad hex' in e,
                 'a blank inside a byte')
    expect_error(['--hex'], '03000000\n0400000500\n', 'pomelo-dump: offset 4: line 2: truncated '
                 'data package: the input ends after 5 of its 9 bytes',
                 'a package never continues on the next line')
    expect_error(['--hex'], '07000000\n', 'pomelo-dump: offset 0: line 1: unknown package type '
                 '0x07 (the types are 1 to 5)', 'bad type in a hex line')
    # --encode input
    hb = '{"package":"heartbeat"}\n'
    expect_error(['--encode', '--hex'], hb + '{"package":"heartbeat",}\n',
                 'pomelo-dump: offset 4: line 2, column 24: bad JSON: invalid JSON',
                 'bad JSON line: offset, line, column', '03000000\n')
    expect_error(['--encode'], 'not json\n', lambda e: e.startswith(
        'pomelo-dump: offset 0: line 1, column ') and 'bad JSON' in e, 'not JSON at all')
    expect_error(['--encode'], '[1]\n', 'pomelo-dump: offset 0: line 1: a line must be a JSON '
                 'object', 'an array line')
    expect_error(['--encode'], '{"package":"heartbeat","colour":1}\n', 'pomelo-dump: offset 0: '
                 'line 1: unknown key "colour"', 'unknown key')
    expect_error(['--encode'], '{"package":"heartbeat","package":"kick"}\n',
                 'pomelo-dump: offset 0: line 1: duplicate key "package"', 'duplicate key')
    expect_error(['--encode'], '{"body":""}\n', 'pomelo-dump: offset 0: line 1: missing '
                 '"package"', 'missing package')
    expect_error(['--encode'], '{"package":"ping"}\n', lambda e: 'unknown package type "ping"' in e,
                 'unknown package name')
    expect_error(['--encode'], '{"package":"heartbeat","id":1}\n', 'pomelo-dump: offset 0: line '
                 '1: "id" is only for data packages', 'message field on a control package')
    expect_error(['--encode'], '{"package":"data","route":"a"}\n', lambda e: 'missing "message"'
                 in e, 'data without message')
    expect_error(['--encode'], '{"package":"data","message":"request","route":"a"}\n',
                 'pomelo-dump: offset 0: line 1: missing "id": a request has one', 'missing id')
    expect_error(['--encode'], '{"package":"data","message":"push","id":1,"route":"a"}\n',
                 'pomelo-dump: offset 0: line 1: a push has no "id"', 'id on a push')
    expect_error(['--encode'], '{"package":"data","message":"request","id":0,"route":"a"}\n',
                 'pomelo-dump: offset 0: line 1: "id" must be an integer from 1 to 2147483647',
                 'id 0')
    expect_error(['--encode'], '{"package":"data","message":"request","id":2147483648,'
                 '"route":"a"}\n', lambda e: '"id" must be an integer' in e, 'id 2^31')
    expect_error(['--encode'], '{"package":"data","message":"request","id":1.5,"route":"a"}\n',
                 lambda e: '"id" must be an integer' in e, 'fractional id')
    expect_error(['--encode'], '{"package":"data","message":"response","id":1,"route":"a"}\n',
                 'pomelo-dump: offset 0: line 1: a response has no route', 'route on a response')
    expect_error(['--encode'], '{"package":"data","message":"notify"}\n', lambda e:
                 'needs exactly one of "route", "route_hex", "route_code"' in e, 'missing route')
    expect_error(['--encode'], '{"package":"data","message":"push","route":"a",'
                 '"route_code":1}\n', lambda e: 'exactly one of' in e, 'route and route_code')
    expect_error(['--encode'], '{"package":"data","message":"push","route_code":65536}\n',
                 lambda e: '"route_code" must be an integer from 0 to 65535' in e,
                 'route_code over 65535')
    expect_error(['--encode'], '{"package":"data","message":"push","route":"%s"}\n' % ('a' * 256),
                 'pomelo-dump: offset 0: line 1: cannot encode: route longer than 255 bytes',
                 'route of 256 bytes')
    expect_error(['--encode'], '{"package":"data","message":"teleport","route":"a"}\n',
                 lambda e: 'unknown message type "teleport"' in e, 'unknown message type')
    expect_error(['--encode'], '{"package":"kick","body":"a","body_hex":"61"}\n',
                 lambda e: 'both "body" and "body_hex"' in e, 'body and body_hex')
    expect_error(['--encode'], '{"package":"kick","body_hex":"6"}\n', lambda e:
                 '"body_hex": bad hex' in e, 'bad body_hex')
    expect_error(['--encode'], '{"package":"kick","body":1}\n', 'pomelo-dump: offset 0: line 1: '
                 '"body" must be a string', 'body not a string')
    expect_error(['--encode'], '{"package":"data","message":"push","route":"a","gzip":1}\n',
                 lambda e: '"gzip" must be true or false' in e, 'gzip not a boolean')
    expect_error(['--encode'], '{"package":"heartbeat","offset":-1}\n', lambda e:
                 '"offset" must be an integer' in e, 'negative offset')
    expect_error(['--encode'], '{"package":"kick","body":"\\ud800"}\n', lambda e:
                 'bad JSON' in e, 'a lone surrogate escape is refused')
    expect_error(['--encode', '--limit', '3'], '{"package":"kick","body":"abcd"}\n', lambda e:
                 'over the limit of 3' in e, 'body over --limit in --encode')


# ---------------------------------------------------------------------------------------------
# Route names and protobuf bodies: --handshake, --dict, --*-protos, handshakes in the stream

PB1 = '0a0268691205616c6963651a012a'  # onChat {"msg":"hi","from":"alice","target":"*"}
FR1 = data_package('06066f6e43686174' + PB1).hex()
FR1_JSON = ('{"offset":0,"package":"data","message":"push","route":"onChat","body_hex":"%s",'
            '"json":{"msg":"hi","from":"alice","target":"*"}}' % PB1)
MS2 = data_package('01010002' + ALICE).hex()  # request id 1, route code 2
MS2_NAMED = (r'{"offset":0,"package":"data","message":"request","id":1,"route_code":2,'
             r'"route_name":"connector.entryHandler.enter",'
             r'"body":"{\"username\":\"alice\",\"rid\":\"room1\"}"}')
SERVER_PROTOS = os.path.join(TRACES, 'dump-serverProtos.json')
CLIENT_PROTOS = os.path.join(TRACES, 'dump-clientProtos.json')
DICT_ARRAY = os.path.join(TRACES, 'dump-dict.json')


def handshake_answers():
    """The server answers of handshake-responses.hex: label -> whole HANDSHAKE package."""
    out = {}
    with open(os.path.join(TRACES, 'handshake-responses.hex'), encoding='utf-8') as f:
        for line in f:
            t = line.split()
            if len(t) == 2 and not line.startswith('#'):
                out[t[0]] = bytes.fromhex(t[1])
    return out


ANSWERS = handshake_answers()


def handshake_package(body):
    if isinstance(body, str):
        body = body.encode('utf-8')
    return bytes([1, len(body) >> 16 & 255, len(body) >> 8 & 255, len(body) & 255]) + body


def with_offset(line, offset):
    o = json.loads(line)
    o['offset'] = offset
    return json.dumps(o, separators=(',', ':'), ensure_ascii=False)


def dump_hex(args, hexes):
    """Dumps packages given as hex strings, one per line. Returns (rc, lines, stderr)."""
    rc, out, err = run(['--hex'] + args, ''.join(h + '\n' for h in hexes))
    return rc, out.decode('utf-8').splitlines(), err


def round_trip(args, hexes, name):
    rc, out, err = run(['--hex'] + args, ''.join(h + '\n' for h in hexes))
    rc2, back, err2 = run(['--encode', '--hex'], out)
    ok(rc == 0 and rc2 == 0 and back.decode() == ''.join(h + '\n' for h in hexes),
       '%s: --encode ignores the derived fields and gives the bytes back' % name, err + err2)


def test_handshake_option(d):
    conn = os.path.join(d, 'conn733.json')
    gate = os.path.join(d, 'gate343.json')
    with open(conn, 'wb') as f:
        f.write(ANSWERS['CONN733'][4:])
    with open(gate, 'wb') as f:
        f.write(ANSWERS['GATE343'][4:])
    rc, lines, err = dump_hex(['--handshake', conn], [FR1])
    is_eq((rc, lines, err), (0, [FR1_JSON], ''),
          '--handshake (chatofpomelo connector answer): onChat protobuf push as json')
    rc, lines, err = dump_hex(['--handshake', conn], [MS2])
    is_eq((rc, lines, err), (0, [MS2_NAMED], ''),
          '--handshake: route code 2 -> route_name connector.entryHandler.enter')
    rc, lines, err = dump_hex(['--handshake=' + conn], [data_package('07000d').hex(),
                                                        data_package('070001').hex()])
    is_eq((rc, lines, err), (0, [
        '{"offset":0,"package":"data","message":"push","route_code":13,"body":""}',
        '{"offset":7,"package":"data","message":"push","route_code":1,'
        '"route_name":"chat.chatHandler.send","body":""}'], ''),
        '--handshake=FILE: an unknown code has no route_name, a known one has')
    rc, lines, err = dump_hex(['--handshake', gate], [FR1, MS2])
    is_eq((rc, lines, err), (0, [FR1_JSON, with_offset(MS2_NAMED.replace(
        ',"route_name":"connector.entryHandler.enter"', ''), len(FR1) // 2)], ''),
        '--handshake (gate answer, protos only): json, but no route names')
    round_trip(['--handshake', conn], [FR1, MS2, data_package('07000d').hex()], '--handshake')
    # The same answer in the stream itself.
    rc, out, err = run([examples_path('chat-c2s.bin')])
    ok(rc == 0 and b'route_name' not in out, 'chat-c2s.bin alone: codes without names', err)
    rc, out, err = run(['--handshake', conn, examples_path('chat-c2s.bin')])
    lines = out.decode().splitlines()
    is_eq((rc, lines[2], err), (0, r'{"offset":83,"package":"data","message":"request","id":1,'
                                r'"route_code":2,"route_name":"connector.entryHandler.enter",'
                                r'"body":"{\"username\":\"carol\",\"rid\":\"room2\"}"}', ''),
          '--handshake chat-c2s.bin: the enter request has its route name')
    names = [json.loads(x).get('route_name') for x in lines if '"route_code"' in x]
    ok(len(names) >= 2 and all(names) and 'chat.chatHandler.send' in names,
       '--handshake chat-c2s.bin: every code named (%s)' % ', '.join(sorted(set(map(str, names)))))


def examples_path(name):
    return os.path.join(EXAMPLES, name)


def test_stream_handshakes():
    conn = ANSWERS['CONN733'].hex()
    n = len(ANSWERS['CONN733'])
    rc, lines, err = dump_hex([], [FR1, conn, '02000000', MS2, FR1])
    want = [json.loads(r'{"offset":0,"package":"data","message":"push","route":"onChat",'
                       r'"body":"\n\u0002hi\u0012\u0005alice\u001a\u0001*"}'),
            None, None,
            json.loads(with_offset(MS2_NAMED, len(FR1) // 2 + n + 4)),
            json.loads(with_offset(FR1_JSON, len(FR1) // 2 + n + 4 + len(MS2) // 2))]
    got = [json.loads(x) for x in lines]
    is_eq((rc, [w is None or g == w for g, w in zip(got, want)], err),
          (0, [True] * 5, ''),
          'a handshake answer in the stream is used for the packages after it, not before')
    is_eq(lines[-1], with_offset(FR1_JSON, len(FR1) // 2 + n + 4 + len(MS2) // 2),
          'in-stream answer: the json line is byte-exact')
    round_trip([], [FR1, conn, '02000000', MS2, FR1], 'in-stream handshake')
    cached = handshake_package('{"code":200,"sys":{"heartbeat":3,"useDict":true,'
                               '"useProto":true}}').hex()
    rc, lines, err = dump_hex([], [conn, cached, MS2, FR1])
    ok(rc == 0 and 'route_name' in lines[2] and '"json"' in lines[3],
       'an answer without dict and protos (versions cached) keeps the ones in use', err)
    client_hs = ('0100004b7b22737973223a7b2274797065223a226a732d776562736f636b6574222c2276657273'
                 '696f6e223a22302e302e31222c22727361223a7b7d2c2270726f746f56657273696f6e223a307d7d')
    rc, lines, err = dump_hex([], [conn, client_hs, handshake_package('{"code":500}').hex(),
                                   handshake_package('not json').hex(), MS2, FR1])
    ok(rc == 0 and err == '' and 'route_name' in lines[4] and '"json"' in lines[5],
       'client requests, error answers and non-JSON handshakes change nothing', err)
    other = handshake_package('{"code":200,"sys":{"dict":{"area.playerHandler.move":2}}}').hex()
    rc, lines, err = dump_hex([], [conn, other, MS2, FR1])
    ok(rc == 0 and json.loads(lines[2]).get('route_name') == 'area.playerHandler.move' and
       '"json"' in lines[3], 'a later answer with a dictionary only replaces the dictionary', err)
    bad = handshake_package('{"code":200,"sys":{"dict":{"a.b.c":0}}}')
    rc, lines, err = dump_hex([], [conn, bad.hex(), MS2])
    is_eq((rc, json.loads(lines[2]).get('route_name'), err.strip()),
          (0, 'connector.entryHandler.enter', 'pomelo-dump: offset %d: warning: the dictionary '
           'and protos of this handshake are not used: sys.dict: JSON value of another type' % n),
          'an answer with a bad dictionary: a warning, exit 0, the old one stays')
    # Real captures decode by themselves.
    rc, out, err = run([examples_path('chat-s2c.bin')])
    lines = out.decode().splitlines()
    is_eq((rc, lines[5], err), (0, '{"offset":812,"package":"data","message":"push",'
                                '"route":"onChat","body_hex":"0a1068656c6c6f2066726f6d20636172'
                                '6f6c12056361726f6c1a012a","json":{"msg":"hello from carol",'
                                '"from":"carol","target":"*"}}', ''),
          'chat-s2c.bin: its own handshake answer decodes the onChat push')
    for name in ('chat-ws.txt', 'chat-tcp.txt'):
        rc, out, err = run(['--trace', os.path.join(TRACES, name)])
        objs = [json.loads(x) for x in out.decode().splitlines()]
        chats = [o for o in objs if o.get('route') == 'onChat']
        coded = [o for o in objs if 'route_code' in o]
        ok(rc == 0 and chats and all('json' in o for o in chats) and
           all(set(o['json']) == {'msg', 'from', 'target'} for o in chats),
           '%s: all %d onChat pushes decoded as json' % (name, len(chats)), err)
        ok(coded and all(o.get('route_name') in ('chat.chatHandler.send',
                                                 'connector.entryHandler.enter')
                         for o in coded), '%s: all %d route codes named' % (name, len(coded)))
        ok(any(o['json']['msg'] == 'psst' and o['json']['target'] != '*' for o in chats),
           '%s: the private message is there too' % name)


PB_T = [  # spec 7.4 vectors, as pushes on route "t" of dump-serverProtos.json
    ('08ac0210011803', '{"u":300,"s":-1,"i":-2}'),
    ('080010001800250000c03f299a9999999999b93f', '{"u":0,"s":0,"i":0,"f":1.5,"d":0.1}'),
    ('0800100018003206e4bda0e5a5bd3a0408011002',
     '{"u":0,"s":0,"i":0,"str":"\u4f60\u597d","pos":{"x":1,"y":2}}'),
    ('08001000180040030102ac024a01614a026263',
     '{"u":0,"s":0,"i":0,"ru":[1,2,300],"rs":["a","bc"]}'),
    ('0800100018005204080110025204080310045a020807',
     '{"u":0,"s":0,"i":0,"rp":[{"x":1,"y":2},{"x":3,"y":4}],"item":{"id":7}}'),
]


def test_proto_files(d):
    rc, lines, err = dump_hex(['--server-protos', SERVER_PROTOS], [FR1, MS2])
    is_eq((rc, lines, err), (0, [FR1_JSON, with_offset(MS2_NAMED.replace(
        ',"route_name":"connector.entryHandler.enter"', ''), len(FR1) // 2)], ''),
        '--server-protos (config form): onChat as json; no dictionary, no names')
    for body, want in PB_T:
        rc, lines, err = dump_hex(['--server-protos', SERVER_PROTOS],
                                  [data_package('0601' + '74' + body).hex()])
        is_eq((rc, lines, err), (0, ['{"offset":0,"package":"data","message":"push","route":"t",'
                                     '"body_hex":"%s","json":%s}' % (body, want)], ''),
              'push "t" %s: json %s' % (body, want))
    rc, lines, err = dump_hex(['--client-protos', CLIENT_PROTOS], [FR1])
    ok(rc == 0 and '"json"' not in lines[0], '--client-protos alone: pushes are not protobuf', err)
    rc, lines, err = dump_hex(['--dict', DICT_ARRAY], [MS2, data_package('010200010000').hex(),
                                                       data_package('01030003').hex(),
                                                       data_package('01040004').hex()])
    is_eq((rc, [json.loads(x).get('route_name') for x in lines], err),
          (0, ['connector.entryHandler.enter', 'chat.chatHandler.send',
               'gate.gateHandler.queryEntry', None], ''),
          '--dict ARRAY: handler routes sorted and numbered from 1, as the server does')
    obj = os.path.join(d, 'dict.json')
    with open(obj, 'w') as f:
        f.write('{"area.playerHandler.move": 7, "onMove": 8}\n')
    conn = os.path.join(d, 'conn733.json')
    rc, lines, err = dump_hex(['--dict', obj, '--handshake', conn],
                              [data_package('070008').hex(), MS2, FR1])
    is_eq((rc, [json.loads(x).get('route_name') for x in lines], '"json"' in lines[2], err),
          (0, ['onMove', None, None], True, ''),
          '--dict OBJECT replaces the handshake\'s dictionary, its protos stay')
    # Responses: the route of the request with the same id.
    send = ('0a05726f6f6d3112026869' '1a05616c696365' '22012a')  # rid, content, from, target
    send_json = '{"rid":"room1","content":"hi","from":"alice","target":"*"}'
    users = '0a05616c6963650a03626f62'
    args = ['--dict', DICT_ARRAY, '--server-protos', SERVER_PROTOS, '--client-protos',
            CLIENT_PROTOS]
    hexes = [data_package('01050002' + ALICE).hex(),       # request 5 enter (code 2)
             data_package('0405' + users).hex(),             # its response: protobuf
             data_package('0405' + users).hex(),             # a second one: no request
             data_package('0406' + users).hex(),             # id 6: never requested
             data_package('00071c' + b'connector.entryHandler.enter'.hex() + '7b7d').hex(),
             data_package('000715' + b'chat.chatHandler.send'.hex() + send).hex(),
             data_package('0407' + users).hex(),             # id 7: the latest request has no
             data_package('0215' + b'chat.chatHandler.send'.hex() + send).hex(),  # server proto
             data_package('01080001' + send).hex()]          # request code 1 with a client proto
    rc, lines, err = dump_hex(args, hexes)
    objs = [json.loads(x) for x in lines]
    is_eq((rc, [o.get('json') for o in objs], err),
          (0, [None, {'users': ['alice', 'bob']}, None, None, None, json.loads(send_json), None,
               json.loads(send_json), json.loads(send_json)], ''),
          'responses decoded with the route of their request; requests and notifies with the '
          'client protos')
    is_eq(lines[1], '{"offset":%d,"package":"data","message":"response","id":5,"body_hex":"%s",'
          '"json":{"users":["alice","bob"]}}' % (len(hexes[0]) // 2, users),
          'the response line is byte-exact')
    ok('body' in objs[2] and objs[8].get('route_name') == 'chat.chatHandler.send',
       'a response without its request keeps its bytes as text; a named code gets json')
    round_trip(args, hexes, '--dict, --server-protos, --client-protos')


def test_json_errors():
    conn_args = ['--server-protos', SERVER_PROTOS]
    rc, lines, err = dump_hex(conn_args, [data_package('06066f6e43686174' + '0a056869').hex()])
    o = json.loads(lines[0]) if lines else {}
    ok(rc == 0 and err == '' and 'json' not in o and
       o.get('json_error', '').startswith('protobuf body ends inside a field at msg (byte ') and
       list(o)[-2:] == ['body_hex', 'json_error'],
       'a truncated body: json_error "... at msg (byte N)", exit 0: %s' % o.get('json_error'),
       err)
    rc, lines, err = dump_hex(conn_args, [data_package('06066f6e43686174' + '220161').hex()])
    o = json.loads(lines[0]) if lines else {}
    ok(rc == 0 and o.get('json_error', '').startswith('protobuf tag not in the message'),
       'an unknown tag: json_error: %s' % o.get('json_error'), err)
    rc, lines, err = dump_hex(conn_args, [data_package('16066f6e43686174' + PB1).hex()])
    is_eq((rc, lines, err), (0, ['{"offset":0,"package":"data","message":"push","route":"onChat",'
                                 '"gzip":true,"body_hex":"%s","json_error":"not decoded: the body '
                                 'is compressed (gzip flag)"}' % PB1], ''),
          'a compressed protobuf body is not decoded')
    rc, lines, err = dump_hex(conn_args, [data_package('06066f6e43686174').hex()])
    is_eq((rc, lines), (0, ['{"offset":0,"package":"data","message":"push","route":"onChat",'
                            '"body_hex":"","json":{}}']), 'an empty protobuf body is {}')
    round_trip(conn_args, [data_package('06066f6e43686174' + '0a056869').hex(),
                           data_package('16066f6e43686174' + PB1).hex()], 'json_error lines')
    # --encode: the derived fields are ignored, but typed.
    deep = '[' * 60 + ']' * 60
    rc, out, err = run(['--encode', '--hex'], '{"package":"data","message":"push","route_code":2,'
                       '"route_name":"x","body_hex":"0a02","json":{"edited":%s}}\n'
                       '{"package":"data","message":"push","route":"a","json_error":"e"}\n'
                       % deep)
    is_eq((rc, out.decode(), err), (0, data_package('0700020a02').hex() + '\n' +
                                    data_package('060161').hex() + '\n', ''),
          '--encode: route_name, json (even deep) and json_error are ignored')
    expect_error(['--encode'], '{"package":"kick","json_error":1}\n', 'pomelo-dump: offset 0: '
                 'line 1: "json_error" must be a string', '--encode: json_error not a string')
    expect_error(['--encode'], '{"package":"data","message":"push","route_code":1,'
                 '"route_name":null}\n', 'pomelo-dump: offset 0: line 1: "route_name" must be a '
                 'string', '--encode: route_name not a string')


def test_context_errors(d):
    def write(name, text):
        path = os.path.join(d, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def bad(args, want, name):
        expect_error(args, FR1 + '\n', want, name + ': exit 2, nothing read', '', status=2)

    missing = os.path.join(d, 'missing.json')
    bad(['--hex', '--handshake', missing], 'pomelo-dump: --handshake %s: cannot open: No such '
        'file or directory' % missing, 'a missing --handshake file')
    p = write('hs1.json', '{"code":200,\n "sys":}')
    bad(['--hex', '--handshake', p], 'pomelo-dump: --handshake %s: line 2, column 8: invalid JSON'
        % p, '--handshake not JSON: line and column')
    p = write('hs2.json', '{"code":500}')
    bad(['--hex', '--handshake', p], 'pomelo-dump: --handshake %s: no "sys" object (not a '
        'server\'s handshake answer)' % p, '--handshake without sys')
    p = write('hs3.json', '{"code":200,"sys":{"heartbeat":3,"useDict":true,"useProto":true}}')
    bad(['--hex', '--handshake', p], 'pomelo-dump: --handshake %s: neither sys.dict (nor '
        'routeToCode, codeToRoute) nor sys.protos' % p, '--handshake of a cached-version answer')
    p = write('hs4.json', '{"code":200,"sys":{"dict":{"a.b.c":"x"}}}')
    bad(['--hex', '--handshake', p], 'pomelo-dump: --handshake %s: sys.dict: JSON value of another '
        'type' % p, '--handshake with a bad dict')
    p = write('hs5.json', '{"code":200,"sys":{"protos":{"server":5,"client":{}}}}')
    bad(['--hex', '--handshake', p], lambda e: e.startswith(
        'pomelo-dump: --handshake %s: sys.protos: invalid protobuf description' % p),
        '--handshake with bad protos')
    p = write('sp1.json', '{"onChat": {"required bool x": 1}}')
    bad(['--hex', '--server-protos', p], lambda e: e.startswith(
        'pomelo-dump: --server-protos %s: invalid protobuf description' % p),
        'a proto file with an unknown type (bool)')
    p = write('sp2.json', '{"onChat": {"required string msg": 1}')
    bad(['--hex', '--server-protos', SERVER_PROTOS, '--client-protos', p],
        'pomelo-dump: --client-protos %s: line 1, column 38: invalid JSON' % p,
        'a proto file that is not JSON, named by its option')
    p = write('sp3.json', '[1, 2]')
    bad(['--hex', '--server-protos', p], lambda e: e.startswith(
        'pomelo-dump: --server-protos %s: ' % p) and 'protobuf description' in e,
        'a proto file that is an array')
    bad(['--hex', '--server-protos', missing], 'pomelo-dump: --server-protos %s: cannot open: No '
        'such file or directory' % missing, 'a missing proto file')
    p = write('d1.json', '5')
    bad(['--hex', '--dict', p], 'pomelo-dump: --dict %s: neither an object {"route":code,...} nor '
        'an array of handler routes' % p, '--dict of a number')
    p = write('d2.json', '["a.b.c", 1]')
    bad(['--hex', '--dict', p], 'pomelo-dump: --dict %s: element 1 is not a route string' % p,
        '--dict array with a number')
    p = write('d3.json', '{"a.b.c": 0}')
    bad(['--hex', '--dict', p], 'pomelo-dump: --dict %s: JSON value of another type' % p,
        '--dict object with code 0')
    p = write('d4.json', '["%s"]' % ('a' * 256))
    bad(['--hex', '--dict', p], 'pomelo-dump: --dict %s: route longer than 255 bytes' % p,
        '--dict with a 256-byte route')
    for args, name in ((['--handshake'], '--handshake without a file'),
                       (['--dict', DICT_ARRAY, '--dict', DICT_ARRAY], '--dict twice'),
                       (['--encode', '--dict', DICT_ARRAY], '--encode --dict'),
                       (['--encode', '--server-protos', SERVER_PROTOS],
                        '--encode --server-protos')):
        rc, out, err = run(args)
        ok(rc == 2 and err.startswith('pomelo-dump: ') and 'pomelo-dump --help' in err,
           'usage error, exit 2: %s' % name, err)
    rc, out, err = run(['--help'])
    ok(all(s in out.decode() for s in ('--handshake FILE', '--dict FILE', '--server-protos FILE',
                                       'route_name', 'json_error')),
       '--help documents the new options and fields')


def test_decode():
    with tempfile.TemporaryDirectory() as d:
        test_handshake_option(d)
        test_stream_handshakes()
        test_proto_files(d)
        test_json_errors()
        test_context_errors(d)


def test_usage():
    rc, out, err = run(['--help'])
    text = out.decode()
    ok(rc == 0 and all(s in text for s in ('NAME', 'SYNOPSIS', 'OPTIONS', 'EXIT STATUS')),
       '--help: a man-style page, exit 0')
    rc, out, err = run(['-h'])
    ok(rc == 0 and out.decode() == text, '-h is --help')
    rc, out, err = run(['--version'])
    ok(rc == 0 and out.decode().startswith('pomelo-dump (libpomelo) '), '--version', out)
    for args, name in ((['--frobnicate'], 'unknown option'), (['--limit', '0'], '--limit 0'),
                       (['--limit', 'x'], '--limit x'), (['--limit'], '--limit without value'),
                       (['--limit', '16777216'], '--limit over 2^24-1'),
                       (['a', 'b'], 'two input files'), (['--hex', '--trace'], '--hex --trace'),
                       (['--encode', '--trace'], '--encode --trace'),
                       (['-o'], '-o without a file')):
        rc, out, err = run(args)
        ok(rc == 2 and err.startswith('pomelo-dump: ') and 'pomelo-dump --help' in err,
           'usage error, exit 2: %s' % name, err)
    rc, out, err = run([os.path.join(HERE, 'no-such-file.bin')])
    ok(rc == 1 and 'cannot open' in err, 'missing input file: exit 1', err)


test_vectors()
test_examples()
test_traces()
test_line_formats()
test_large_stream()
test_errors()
test_decode()
test_usage()
print('1..%d' % count)
sys.exit(1 if failed else 0)
