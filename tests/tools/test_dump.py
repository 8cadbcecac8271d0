#!/usr/bin/env python3
"""Tests of the pomelo-dump tool (TAP output).

    python3 test_dump.py PATH/TO/pomelo-dump

Checks lines written by hand from the spec's vectors, the recorded traces and the example
captures (dump, then --encode, must give the input bytes back), and the error cases (exit
status 1 with the offset, 2 for usage errors). Data paths are found from this file's location.
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
test_usage()
print('1..%d' % count)
sys.exit(1 if failed else 0)
