// The node `ws` package (8.x, a WebSocket client that offers permessage-deflate by default) and
// raw TCP sockets against examples/pomelo-echo's hybrid port (TCP and WebSocket on one port).
//
//   node ws-node.js PATH/TO/pomelo-echo
//
// Packages are encoded and decoded with the real pomelo-protocol@0.1.6. The checks (all at
// once, each on its own connections, a few seconds in all):
//   1. a Pomelo session over `ws` through a recording relay: the upgrade request offers
//      permessage-deflate, the 101 declines it (no Sec-WebSocket-Extensions; ws.extensions is
//      empty); handshake, ACK, the server's first heartbeat, request/response, notify/push; every
//      server frame binary, final, unmasked, without RSV bits, one package each; close 1000
//      answered with 1000 and then the server's FIN;
//   2. a request fragmented into three frames with a ping between two of them;
//   3. handshake, ACK and a request each in a text frame (the real server accepts text frames);
//   4. ping -> pong with the same payload (before and after the Pomelo handshake);
//   5. the close code echoed (1000 and 4000);
//   6. a request just under max_body (16-bit frame length) whose response needs a 64-bit one;
//   7. a message over the limit (max_body + 4 bytes) -> KICK {"reason":"message too large"},
//      then close 1009; over raw TCP the same KICK, then the server closes;
//   8. libpomelo's leniency (docs/transport.md): two packages in one message, and one package
//      split across two messages, are both processed (the real server closes on the first and
//      cannot reassemble the second; conn-probes.js compares the first against it);
//   9. bad upgrades on a raw socket: no Sec-WebSocket-Key -> 400, Sec-WebSocket-Version: 8 ->
//      426 with Sec-WebSocket-Version: 13, POST -> 405, no Upgrade header -> 400; each closed;
//  10. the hybrid sniffer with the method split across writes ("GE", 100 ms, "T / HTTP/1.1...")
//      -> 101, then a Pomelo handshake in a masked frame works. A deliberate difference: the real
//      server decides on the first chunk alone, takes "GE" for raw TCP and closes (spec 1.4, its
//      `FIXME: handle incomplete HTTP method`);
//  11. raw-TCP Pomelo on the same port: handshake, ACK, heartbeat, request, notify.
// pomelo-echo runs with heartbeat 3 s and must exit with status 0 on SIGTERM (so a sanitizer
// report in an ASan build fails the test), after a graceful shutdown: a WebSocket client and a
// raw-TCP client connected at that moment each get KICK {"reason":"server shutting down"} and
// then the close. Any loop the echo server runs on can be given (pomelo-echo-uv, ...).
//
// Environment: PEER_TESTS_REQUIRED=1 fails instead of skipping (exit 77) when node_modules is
// missing. Exit status: 0 all passed, 1 a failure, 2 usage, 77 skipped.
'use strict';

const assert = require('assert');
const crypto = require('crypto');
const net = require('net');
const path = require('path');

const SKIP = 77;
const OVERALL_LIMIT_MS = 30000;
const WAIT_MS = 3000;

function skipOrFail(how) {
  if (process.env.PEER_TESTS_REQUIRED === '1') {
    console.error('ws-node: FAIL: ' + how);
    process.exit(1);
  }
  console.log('ws-node: SKIP: ' + how);
  process.exit(SKIP);
}

let Package, Message, WebSocket;
try {
  ({ Package, Message } = require('pomelo-protocol'));
  WebSocket = require('ws');
} catch (e) {
  skipOrFail('node_modules is missing in ' + __dirname + ': run npm ci in tests/peers');
}
const { sleep, startEcho, startRelay, WsParser, packages, PomeloSocket } = require('./ws-wire.js');
process.noDeprecation = true; // pomelo-protocol calls the deprecated `new Buffer()`

const echoPath = process.argv[2];
if (!echoPath) {
  console.error('usage: node ' + path.basename(__filename) + ' PATH/TO/pomelo-echo');
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Pomelo bytes

const ROUTE = 'connector.entryHandler.entry';
const json = (o) => Buffer.from(JSON.stringify(o));
const JS_CLIENT_SYS = { type: 'js-websocket', version: '0.0.1', rsa: {}, protoVersion: 0 };
const HS = Package.encode(Package.TYPE_HANDSHAKE, json({ sys: JS_CLIENT_SYS }));
const ACK = Package.encode(Package.TYPE_HANDSHAKE_ACK);
const HB = Package.encode(Package.TYPE_HEARTBEAT);
const request = (id, body, route = ROUTE) =>
  Package.encode(Package.TYPE_DATA,
                 Message.encode(id, Message.TYPE_REQUEST, 0, route, json(body)));
const notify = (body, route) =>
  Package.encode(Package.TYPE_DATA,
                 Message.encode(0, Message.TYPE_NOTIFY, 0, route, json(body)));
const echoed = (route, body) => ({ code: 200, route, echo: body });

// A received package, decoded: {type, hs (handshake JSON), msg {id, type, route, body (parsed)}}.
function decodePkg(p) {
  const out = { type: p.type };
  if (p.type === Package.TYPE_HANDSHAKE) {
    out.hs = JSON.parse(Buffer.from(p.body).toString('utf8'));
  } else if (p.type === Package.TYPE_DATA) {
    const m = Message.decode(Buffer.from(p.body));
    out.msg = { id: m.id, type: m.type, route: m.route,
                body: JSON.parse(Buffer.from(m.body).toString('utf8')) };
  } else if (p.type === Package.TYPE_KICK) {
    out.body = JSON.parse(Buffer.from(p.body).toString('utf8'));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A `ws` client that collects the packages it receives

class Client {
  constructor(url, options) {
    this.ws = new WebSocket(url, options);
    this.ws.binaryType = 'nodebuffer';
    this.pkgs = [];
    this.messages = []; // {binary, length, packages}
    this.pongs = [];
    this.waiters = [];
    this.errors = [];
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters) {
          w.reject(new Error('closed (' + code + ') while waiting for ' + w.what));
        }
        this.waiters = [];
        resolve(this.closeInfo);
      });
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.on('open', resolve);
      this.ws.on('error', (e) => (this.errors.push(e.message), reject(e)));
    });
    this.ws.on('message', (data, isBinary) => {
      const { packages: list, rest } = packages(data);
      this.messages.push({ binary: isBinary, length: data.length, count: list.length, rest });
      for (const p of list) {
        this.pkgs.push(decodePkg(p));
      }
      this.wake();
    });
    this.ws.on('pong', (data) => (this.pongs.push(data.toString()), this.wake()));
  }

  wake() {
    this.waiters = this.waiters.filter((w) => {
      const v = w.test();
      if (v) {
        w.resolve(v);
      }
      return !v;
    });
  }

  // Resolves with the first value test() returns truthy (checked now and on every arrival).
  until(what, test) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no ' + what + ' in ' + WAIT_MS + ' ms')),
                               WAIT_MS);
      this.waiters.push({
        what,
        test,
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.wake();
    });
  }

  // The n-th package (0-based) of `type`.
  pkg(type, n = 0) {
    return this.until('package type ' + type + ' #' + n, () => {
      const l = this.pkgs.filter((p) => p.type === type);
      return l.length > n ? l[n] : null;
    });
  }

  response(id) {
    return this.until('response ' + id, () =>
      this.pkgs.find((p) => p.msg && p.msg.type === Message.TYPE_RESPONSE && p.msg.id === id));
  }

  push(route, n = 0) {
    return this.until('push ' + route, () => {
      const l = this.pkgs.filter((p) => p.msg && p.msg.type === Message.TYPE_PUSH &&
                                        p.msg.route === route);
      return l.length > n ? l[n] : null;
    });
  }

  send(bytes, opts = {}) {
    this.ws.send(bytes, Object.assign({ binary: true }, opts));
  }

  // Pomelo handshake and ACK; resolves with the handshake response once the server's first
  // heartbeat (sent right after the ACK) has arrived.
  async handshake(opts) {
    this.send(HS, opts);
    const hs = await this.pkg(Package.TYPE_HANDSHAKE);
    this.send(ACK, opts);
    await this.pkg(Package.TYPE_HEARTBEAT);
    return hs.hs;
  }

  close(code, reason) {
    this.ws.close(code, reason);
    return Promise.race([
      this.closed,
      sleep(WAIT_MS).then(() => { throw new Error('no close event in ' + WAIT_MS + ' ms'); }),
    ]);
  }
}

async function connect(port, options) {
  const c = new Client('ws://127.0.0.1:' + port + '/', options);
  await c.opened;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Raw sockets

// Writes each chunk (waiting `gap` ms between them), then collects what the server sends until
// it closes the connection (or `waitMs`): {data, closedByServer}.
function rawExchange(port, chunks, { gap = 100, waitMs = WAIT_MS, until } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    let done = false;
    const finish = (closedByServer) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        sock.destroy();
        resolve({ data, closedByServer });
      }
    };
    const timer = setTimeout(() => finish(false), waitMs);
    sock.on('data', (d) => {
      data = Buffer.concat([data, d]);
      if (until && until(data, sock)) {
        finish(false);
      }
    });
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', (e) => (e.code === 'ECONNRESET' ? finish(true) : reject(e)));
    sock.on('connect', async () => {
      for (let i = 0; i < chunks.length; i++) {
        if (i) {
          await sleep(gap);
        }
        if (!done) {
          sock.write(chunks[i]);
        }
      }
    });
  });
}

function upgradeRequest(key, { method = 'GET', version = '13', upgrade = true } = {}) {
  const lines = [method + ' / HTTP/1.1', 'Host: 127.0.0.1'];
  if (upgrade) {
    lines.push('Upgrade: websocket', 'Connection: Upgrade');
  }
  if (key) {
    lines.push('Sec-WebSocket-Key: ' + key);
  }
  lines.push('Sec-WebSocket-Version: ' + version, '', '');
  return Buffer.from(lines.join('\r\n'));
}

const acceptFor = (key) => crypto.createHash('sha1')
  .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');

// One masked client frame (RFC 6455 5.2), payload < 126 bytes.
function maskedFrame(opcode, payload) {
  assert(payload.length < 126);
  const mask = crypto.randomBytes(4);
  const out = Buffer.alloc(6 + payload.length);
  out[0] = 0x80 | opcode;
  out[1] = 0x80 | payload.length;
  mask.copy(out, 2);
  for (let i = 0; i < payload.length; i++) {
    out[6 + i] = payload[i] ^ mask[i & 3];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The checks: each gets pomelo-echo ({host, port}) and returns a one-line summary.

async function checkSession(echo) {
  const relay = await startRelay(echo.host, echo.port);
  try {
    const c = await connect(relay.port); // ws defaults: perMessageDeflate offered
    const wire = relay.conns[0];
    assert.match(wire.c2s.head, /^Sec-WebSocket-Extensions:.*permessage-deflate/im,
                 'ws offers permessage-deflate');
    assert.match(wire.s2c.head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.doesNotMatch(wire.s2c.head, /Sec-WebSocket-Extensions/i, 'the 101 declines it');
    assert.strictEqual(c.ws.extensions, '', 'no extension negotiated');
    assert.strictEqual(c.ws.protocol, '', 'no subprotocol');

    const hs = await c.handshake();
    assert.strictEqual(hs.code, 200);
    assert.strictEqual(hs.sys.heartbeat, 3);
    c.send(request(1, { a: 1 }));
    const r = await c.response(1);
    assert.deepStrictEqual(r.msg.body, echoed(ROUTE, { a: 1 }));
    c.send(notify({ x: 'y' }, 'chat.chatHandler.send'));
    const p = await c.push('onEcho');
    assert.deepStrictEqual(p.msg.body, { x: 'y' });

    const closeInfo = await c.close(1000, 'bye');
    assert.strictEqual(closeInfo.code, 1000, 'close code echoed');
    for (let i = 0; i < 50 && wire.serverEndAt === null; i++) {
      await sleep(20);
    }
    // The wire, as the relay saw it.
    const data = wire.s2c.frames.filter((f) => f.opcode < 8);
    for (const f of wire.s2c.frames) {
      assert(!f.masked && f.fin && f.rsv === 0, 'server frame: unmasked, final, no RSV bits');
    }
    for (const f of wire.c2s.frames) {
      assert(f.masked, 'client frames masked');
    }
    for (const f of data) {
      assert.strictEqual(f.opcode, 2, 'server data frames are binary');
      const { packages: l, rest } = packages(f.payload);
      assert(l.length === 1 && rest === 0, 'one whole package per server frame');
    }
    const types = data.map((f) => f.payload[0]);
    assert.deepStrictEqual(types, [1, 3, 4, 4], 'handshake, heartbeat, response, push');
    const cc = wire.c2s.closeFrame();
    const sc = wire.s2c.closeFrame();
    assert(cc && sc && cc.code === 1000 && sc.code === 1000 && sc.t >= cc.t,
           'close 1000 answered with 1000');
    assert(wire.serverEndAt !== null, 'the server closed the TCP connection after the close');
    return 'permessage-deflate offered and declined (ws.extensions ""), ' + data.length +
      ' server frames all binary/final/unmasked with one package each, close 1000 -> 1000';
  } finally {
    relay.close();
  }
}

async function checkFragmented(echo) {
  const relay = await startRelay(echo.host, echo.port);
  try {
    const c = await connect(relay.port);
    await c.handshake();
    const pkg = request(7, { fragmented: 'yes', pad: 'x'.repeat(40) });
    const cut1 = 5;
    const cut2 = 30;
    c.send(pkg.subarray(0, cut1), { fin: false });
    c.ws.ping(Buffer.from('between'));
    c.send(pkg.subarray(cut1, cut2), { fin: false });
    c.send(pkg.subarray(cut2), { fin: true });
    const r = await c.response(7);
    assert.deepStrictEqual(r.msg.body, echoed(ROUTE, { fragmented: 'yes', pad: 'x'.repeat(40) }));
    await c.until('pong', () => c.pongs.includes('between'));
    const ops = relay.conns[0].c2s.frames.map((f) => f.opcode + (f.fin ? '' : '-'));
    assert.deepStrictEqual(ops.slice(2, 6), ['2-', '9', '0-', '0'],
                           'binary, ping, continuation, final continuation on the wire');
    await c.close(1000);
    return 'frames ' + ops.slice(2, 6).join(' ') + ' (opcode, - = not final): response id 7 ' +
      'and pong "between"';
  } finally {
    relay.close();
  }
}

async function checkText(echo) {
  const c = await connect(echo.port);
  const hs = await c.handshake({ binary: false });
  assert.strictEqual(hs.code, 200);
  c.send(request(3, { text: 'frame' }), { binary: false });
  const r = await c.response(3);
  assert.deepStrictEqual(r.msg.body, echoed(ROUTE, { text: 'frame' }));
  assert(c.messages.every((m) => m.binary), 'the server answers in binary frames');
  await c.close(1000);
  return 'handshake, ACK and request id 3 in text frames: answered (in binary frames)';
}

async function checkSubprotocol(echo) {
  // RFC 6455 clients fail a 101 that ignores their offer; the real server echoes the first one.
  const c = await connect(echo.port, ['pomelo', 'other']);
  assert.strictEqual(c.ws.protocol, 'pomelo', 'the first offered subprotocol is selected');
  const hs = await c.handshake();
  assert.strictEqual(hs.code, 200);
  await c.close(1000);
  return 'offered [pomelo, other]: 101 selects "pomelo", handshake 200';
}

async function checkPing(echo) {
  const c = await connect(echo.port);
  c.ws.ping(Buffer.from('before-handshake'));
  await c.until('pong 1', () => c.pongs.includes('before-handshake'));
  await c.handshake();
  c.ws.ping(Buffer.from('working'));
  await c.until('pong 2', () => c.pongs.includes('working'));
  c.ws.ping();
  await c.until('pong 3', () => c.pongs.includes(''));
  await c.close(1000);
  return 'pongs: ' + c.pongs.map((p) => JSON.stringify(p)).join(', ');
}

async function checkCloseCodes(echo) {
  const codes = [];
  for (const code of [1000, 4000]) {
    const c = await connect(echo.port);
    await c.handshake();
    const info = await c.close(code, 'probe ' + code);
    assert.strictEqual(info.code, code, 'close ' + code + ' echoed');
    codes.push(code + ' -> ' + info.code);
  }
  return codes.join(', ');
}

async function checkLarge(echo) {
  const c = await connect(echo.port);
  await c.handshake();
  const big = { s: 'z'.repeat(65490) }; // the request just under max_body
  const pkg = request(9, big);
  assert(pkg.length > 65535 - 100 && pkg.length <= 65536 + 4);
  c.send(pkg);
  const r = await c.response(9);
  assert.deepStrictEqual(r.msg.body, echoed(ROUTE, big));
  const m = c.messages[c.messages.length - 1];
  assert(m.length > 65535, 'response frame with a 64-bit length');
  await c.close(1000);
  return 'request of ' + pkg.length + ' bytes (16-bit length) answered by a message of ' +
    m.length + ' bytes (64-bit length)';
}

async function checkTooLarge(echo) {
  const c = await connect(echo.port);
  await c.handshake();
  // A DATA package of 65 537 body bytes: one byte over max_body (64 KiB).
  const body = Buffer.alloc(65537, 0x20);
  const pkg = Buffer.concat([Buffer.from([4, 0x01, 0x00, 0x01]), body]);
  c.send(pkg);
  const info = await Promise.race([c.closed, sleep(WAIT_MS).then(() => ({ code: 'none' }))]);
  assert.strictEqual(info.code, 1009, 'closed with 1009 (message too big)');
  const kick = c.pkgs.find((p) => p.type === Package.TYPE_KICK);
  assert(kick, 'a KICK came before the close');
  assert.deepStrictEqual(kick.body, { reason: 'message too large' });
  return 'message of ' + pkg.length + ' bytes: KICK "message too large", close ' + info.code;
}

async function checkLeniency(echo) {
  const c = await connect(echo.port);
  await c.handshake();
  c.send(Buffer.concat([request(11, { two: 1 }), request(12, { two: 2 })]));
  const [a, b] = [await c.response(11), await c.response(12)];
  assert.deepStrictEqual(a.msg.body.echo, { two: 1 });
  assert.deepStrictEqual(b.msg.body.echo, { two: 2 });
  const pkg = request(13, { split: 'across messages' });
  c.send(pkg.subarray(0, 6));
  await sleep(50);
  c.send(pkg.subarray(6));
  const s = await c.response(13);
  assert.deepStrictEqual(s.msg.body.echo, { split: 'across messages' });
  await c.close(1000);
  return 'two packages in one message: both answered (ids 11, 12); one split across two ' +
    'messages: answered (id 13)';
}

async function checkBadUpgrades(echo) {
  const key = crypto.randomBytes(16).toString('base64');
  const cases = [
    ['no Sec-WebSocket-Key', upgradeRequest(null), /^HTTP\/1\.1 400 /],
    ['Sec-WebSocket-Version: 8', upgradeRequest(key, { version: '8' }),
      /^HTTP\/1\.1 426 [^]*\r\nSec-WebSocket-Version: 13\r\n/],
    ['POST', upgradeRequest(key, { method: 'POST' }), /^HTTP\/1\.1 405 /],
    ['no Upgrade header', upgradeRequest(key, { upgrade: false }), /^HTTP\/1\.1 400 /],
  ];
  const out = await Promise.all(cases.map(async ([what, req, re]) => {
    const r = await rawExchange(echo.port, [req]);
    const text = r.data.toString('latin1');
    assert.match(text, re, what + ': got ' + JSON.stringify(text.slice(0, 80)));
    assert(r.closedByServer, what + ': the server closes the connection');
    return what + ' -> ' + text.split('\r\n')[0].slice(9);
  }));
  return out.join('; ');
}

async function checkSplitMethod(echo) {
  const key = crypto.randomBytes(16).toString('base64');
  const full = upgradeRequest(key);
  let sentHandshake = false;
  const r = await rawExchange(echo.port, [full.subarray(0, 2), full.subarray(2)], {
    gap: 100,
    until: (data, sock) => {
      const p = new WsParser();
      p.push(data, 0);
      if (p.head === null) {
        return false;
      }
      if (!/^HTTP\/1\.1 101 /.test(p.head)) {
        return true;
      }
      if (!sentHandshake) {
        sentHandshake = true;
        sock.write(maskedFrame(2, HS)); // the Pomelo handshake, in a masked binary frame
      }
      return p.frames.length > 0;
    },
  });
  const p = new WsParser();
  p.push(r.data, 0);
  assert.match(p.head || r.data.toString('latin1'), /^HTTP\/1\.1 101 /,
               '"GE" then "T / ..." upgrades');
  const accept = /\r\nSec-WebSocket-Accept: (\S+)/i.exec(p.head);
  assert(accept && accept[1] === acceptFor(key), 'the right Sec-WebSocket-Accept');
  assert(p.frames.length >= 1, 'a frame after the 101');
  const { packages: l } = packages(p.frames[0].payload);
  assert.strictEqual(l[0].type, Package.TYPE_HANDSHAKE);
  assert.strictEqual(decodePkg(l[0]).hs.code, 200);
  return '"GE", 100 ms, "T / HTTP/1.1 ...": 101 with the right accept key, then handshake 200 ' +
    '(the real server closes: deliberate difference, spec 1.4)';
}

const rawClient = (port) => new PomeloSocket(net.connect(port, '127.0.0.1'));

async function checkRawTcp(echo) {
  const c = rawClient(echo.port);
  try {
    const hs = await c.handshake(JS_CLIENT_SYS);
    assert.strictEqual(hs.code, 200);
    c.sock.write(Buffer.concat([HB, request(1, { tcp: true })]));
    const r = await c.until('response', () => c.got.find((p) => p.msg && p.msg.id === 1));
    assert.deepStrictEqual(r.msg.body, echoed(ROUTE, { tcp: true }));
    c.sock.write(notify({ tcp: 'push' }, 'chat.chatHandler.send'));
    const p = await c.until('push', () => c.got.find((x) => x.msg && x.msg.route === 'onEcho'));
    assert.deepStrictEqual(p.msg.body, { tcp: 'push' });
    return 'handshake 200, heartbeats, response id 1, push onEcho';
  } finally {
    c.sock.destroy();
  }
}

async function checkTooLargeTcp(echo) {
  const c = rawClient(echo.port);
  try {
    await c.handshake();
    // A header claiming 65 537 body bytes, one over max_body; the body is never sent.
    c.sock.write(Buffer.from([4, 0x01, 0x00, 0x01, 0x20, 0x20]));
    const k = await c.kick();
    assert.deepStrictEqual(k.body, { reason: 'message too large' });
    await Promise.race([c.ended, sleep(WAIT_MS).then(() => { throw new Error('not closed'); })]);
    return 'KICK {"reason":"message too large"}, then closed';
  } finally {
    c.sock.destroy();
  }
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const limit = setTimeout(() => {
    console.error('ws-node: FAIL: took more than ' + OVERALL_LIMIT_MS / 1000 + ' s');
    process.exit(1);
  }, OVERALL_LIMIT_MS);
  const t0 = Date.now();
  const echo = await startEcho(echoPath, ['--heartbeat', '3']);
  console.log('# pomelo-echo on ' + echo.host + ':' + echo.port + ', ws ' +
              require('ws/package.json').version);
  const checks = [
    ['a session over ws through a relay', checkSession],
    ['a fragmented message with a ping inside', checkFragmented],
    ['text frames', checkText],
    ['a subprotocol offer', checkSubprotocol],
    ['ping -> pong', checkPing],
    ['the close code is echoed', checkCloseCodes],
    ['16-bit and 64-bit frame lengths', checkLarge],
    ['a message over the limit', checkTooLarge],
    ['packages across message boundaries (libpomelo leniency)', checkLeniency],
    ['bad upgrade requests', checkBadUpgrades],
    ['the hybrid port with the method split across writes', checkSplitMethod],
    ['raw TCP on the same port', checkRawTcp],
    ['a raw-TCP package over the limit', checkTooLargeTcp],
  ];
  const took = [];
  const results = await Promise.allSettled(checks.map(async ([, fn], i) => {
    const t = Date.now();
    try {
      return await fn(echo);
    } finally {
      took[i] = ((Date.now() - t) / 1000).toFixed(1) + ' s';
    }
  }));
  // Two clients connected when the server is told to stop: each gets the shutdown KICK.
  const wsc = await connect(echo.port);
  await wsc.handshake();
  const tcpc = rawClient(echo.port);
  await tcpc.handshake();
  const exit = await echo.stop();
  const kicked = await Promise.allSettled([
    wsc.pkg(Package.TYPE_KICK).then(async (k) => {
      assert.deepStrictEqual(k.body, { reason: 'server shutting down' });
      await wsc.closed;
    }),
    tcpc.kick().then(async (k) => {
      assert.deepStrictEqual(k.body, { reason: 'server shutting down' });
      await tcpc.ended;
    }),
  ]);
  console.log('1..' + (checks.length + 2));
  let failed = 0;
  results.forEach((res, i) => {
    if (res.status === 'fulfilled') {
      console.log('ok ' + (i + 1) + ' - ' + checks[i][0] + ': ' + res.value + ' (' + took[i] + ')');
    } else {
      failed++;
      console.log('not ok ' + (i + 1) + ' - ' + checks[i][0] + ' (' + took[i] + ')');
      console.log(String(res.reason && (res.reason.stack || res.reason)).replace(/^/gm, '# '));
    }
  });
  if (exit === 0) {
    console.log('ok ' + (checks.length + 1) + ' - pomelo-echo exits with status 0 on SIGTERM');
  } else {
    failed++;
    console.log('not ok ' + (checks.length + 1) + ' - pomelo-echo exits with status 0 on ' +
                'SIGTERM: ' + exit);
    console.log(echo.stderr().slice(-4000).replace(/^/gm, '# '));
  }
  const bad = kicked.filter((k) => k.status !== 'fulfilled');
  if (bad.length === 0) {
    console.log('ok ' + (checks.length + 2) + ' - on SIGTERM a WebSocket and a raw-TCP client ' +
                'each got KICK {"reason":"server shutting down"}, then the close');
  } else {
    failed++;
    console.log('not ok ' + (checks.length + 2) + ' - shutdown KICK: ' +
                bad.map((k) => String(k.reason)).join('; '));
  }
  console.log('# ' + ((Date.now() - t0) / 1000).toFixed(1) + ' s in all');
  console.log('ws-node: ' + (checks.length + 2 - failed) + ' passed, ' + failed + ' failed');
  clearTimeout(limit);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error('ws-node: FAIL: ' + (e.stack || e));
  process.exit(1);
});
