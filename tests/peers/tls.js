// examples/tls/pomelo-echo-tls (the echo server behind OpenSSL memory BIOs) against real TLS
// peers: the real browser client over wss:// and node's tls module speaking raw-TCP Pomelo, on
// the one port.
//
//   node tls.js PATH/TO/pomelo-echo-tls
//
// A self-signed certificate for 127.0.0.1 (an EC P-256 key, subjectAltName IP:127.0.0.1) is made
// at test time with the openssl command in a temporary directory; every client verifies the
// server against it (no verification is switched off). The checks:
//   1. wss: pomelo-jsclient-websocket@0.1.1 (as installed, loaded as in ws-jsclient.js) with a
//      WebSocket that opens wss:// (the client builds ws:// URLs; a page served over https
//      does the same wrapping): init (handshake 200, heartbeat 1), request -> echo, notify ->
//      onEcho push, 2.5 s of heartbeats only, another request, disconnect -> 'close';
//   2. TLS raw TCP (node's tls, pomelo-protocol for the packages): handshake, ACK, heartbeat,
//      request, notify -> push, a request body of 100 KiB in many TLS records, answered;
//   3. bad input: plain (unencrypted) Pomelo bytes to the TLS port are refused and closed; a
//      TLS client that sends a package over the limit gets KICK "message too large";
//   4. shutdown: a wss client and a TLS raw-TCP client connected when the server gets SIGTERM
//      each receive KICK {"reason":"server shutting down"}, and the server exits with status 0.
// Everything on 127.0.0.1, within 30 s.
//
// Environment: PEER_TESTS_REQUIRED=1 fails instead of skipping (exit 77) when node_modules or
// the openssl command is missing. Exit status: 0 all passed, 1 a failure, 2 usage, 77 skipped.
'use strict';

const assert = require('assert');
const childProcess = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const tls = require('tls');

const SKIP = 77;
const OVERALL_LIMIT_MS = 30000;
const WAIT_MS = 3000;
const HEARTBEAT_S = 1;
const ROUTE = 'connector.entryHandler.entry';

function skipOrFail(how) {
  if (process.env.PEER_TESTS_REQUIRED === '1') {
    console.error('tls: FAIL: ' + how);
    process.exit(1);
  }
  console.log('tls: SKIP: ' + how);
  process.exit(SKIP);
}

try {
  for (const m of ['pomelo-jsclient-websocket', 'pomelo-protocol', 'pomelo-protobuf', 'ws']) {
    require.resolve(m);
  }
} catch (e) {
  skipOrFail('node_modules is missing in ' + __dirname + ': run npm ci in tests/peers');
}
const tlsPath = process.argv[2];
if (!tlsPath) {
  console.error('usage: node ' + path.basename(__filename) + ' PATH/TO/pomelo-echo-tls');
  process.exit(2);
}
process.noDeprecation = true; // pomelo-protocol calls the deprecated `new Buffer()`

const { Package, Message } = require('pomelo-protocol'); // the node branch: Buffer
const WebSocket = require('ws');
const { sleep, startEcho, PomeloSocket, withTimeout } = require('./ws-wire.js');
const env = require('./jsclient-env.js');
const say = env.say;

// ---------------------------------------------------------------------------------------------
// The certificate

function makeCertificate(dir) {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  const r = childProcess.spawnSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { encoding: 'utf8' });
  if (r.error) {
    skipOrFail('no openssl command: ' + r.error.message);
  }
  assert.strictEqual(r.status, 0, 'openssl req failed: ' + r.stderr);
  return { key, cert, ca: fs.readFileSync(cert) };
}

// ---------------------------------------------------------------------------------------------
// Clients

// The browser client with a WebSocket that opens wss:// against our certificate.
function browserClient(ca) {
  class WssSocket extends WebSocket {
    constructor(url, protocols) {
      super(url.replace(/^ws:/, 'wss:'), protocols, { ca });
    }
  }
  env.setGlobal('WebSocket', WssSocket);
  const pomelo = env.loadClient(env.protocolBrowser);
  const kicks = [];
  pomelo.on('onKick', (k) => kicks.push(k));
  return { pomelo, kicks };
}

// A raw-TCP Pomelo client over TLS, verifying the server against `ca`.
const tlsClient = (port, ca) =>
  new PomeloSocket(tls.connect({ host: '127.0.0.1', port, ca }), 'secureConnect');

// ---------------------------------------------------------------------------------------------
// The checks

async function checkWss(echo, cert) {
  const { pomelo, kicks } = browserClient(cert.ca);
  const events = [];
  for (const ev of ['close', 'disconnect', 'heartbeat timeout', 'io-error', 'error']) {
    pomelo.on(ev, () => events.push(ev));
  }
  const request = (body) =>
    withTimeout(new Promise((resolve) => pomelo.request(ROUTE, body, resolve)), 'response');
  await withTimeout(new Promise((resolve) => pomelo.init({ host: '127.0.0.1', port: echo.port },
                                                          resolve)), 'init over wss');
  assert.deepStrictEqual(await request({ a: 1 }), { code: 200, route: ROUTE, echo: { a: 1 } });
  const pushed = new Promise((resolve) => pomelo.on('onEcho', resolve));
  pomelo.notify('chat.chatHandler.send', { x: 'y' });
  assert.deepStrictEqual(await withTimeout(pushed, 'onEcho push'), { x: 'y' });
  await sleep(2500); // 2.5 heartbeat intervals: a client silent for 2 would be dropped
  assert.deepStrictEqual(await request({ again: true }),
                         { code: 200, route: ROUTE, echo: { again: true } });
  assert.deepStrictEqual(events, [], 'no close or error before disconnect()');
  const closed = new Promise((resolve) => pomelo.on('close', resolve));
  pomelo.disconnect();
  await withTimeout(closed, "'close' after disconnect()");
  assert.deepStrictEqual(kicks, []);
  return 'wss: init, request, push, heartbeats for 2.5 s, request, close';
}

async function checkTlsTcp(echo, cert) {
  const c = tlsClient(echo.port, cert.ca);
  try {
    const hs = await c.handshake();
    assert.strictEqual(hs.code, 200);
    assert.strictEqual(hs.sys.heartbeat, HEARTBEAT_S);
    const r = await c.request(1, ROUTE, { tls: true });
    assert.deepStrictEqual(r.msg.body, { code: 200, route: ROUTE, echo: { tls: true } });
    c.notify('a.b.c', { n: 1 });
    const p = await c.push('onEcho');
    assert.deepStrictEqual(p.msg.body, { n: 1 });
    const big = { pad: 'x'.repeat(60000) }; // several TLS records each way
    const r2 = await c.request(2, ROUTE, big);
    assert.deepStrictEqual(r2.msg.body.echo, big);
    assert.strictEqual(c.sock.getProtocol().startsWith('TLSv1.'), true);
    return 'TLS raw TCP (' + c.sock.getProtocol() + '): handshake 200, request, push, a 60 KB ' +
      'request echoed';
  } finally {
    c.sock.destroy();
  }
}

async function checkBadInput(echo, cert) {
  // Plain Pomelo bytes to the TLS port: not a TLS ClientHello, refused.
  const closed = await new Promise((resolve) => {
    const s = net.connect(echo.port, '127.0.0.1', () => {
      s.write(Package.encode(Package.TYPE_HANDSHAKE, Buffer.from('{"sys":{}}')));
    });
    let got = Buffer.alloc(0);
    s.on('data', (d) => (got = Buffer.concat([got, d])));
    s.on('error', () => {});
    s.on('close', () => resolve(got));
    setTimeout(() => (s.destroy(), resolve(null)), WAIT_MS);
  });
  assert(closed !== null, 'a plain connection to the TLS port is closed');
  assert(closed.length === 0 || closed[0] === 0x15, 'nothing but a TLS alert is sent back');
  // A TLS client with a package over the limit.
  const c = tlsClient(echo.port, cert.ca);
  try {
    await c.handshake();
    c.sock.write(Buffer.from([4, 0x01, 0x00, 0x01, 0x20])); // claims 65 537 body bytes
    const k = await c.kick();
    assert.deepStrictEqual(k.body, { reason: 'message too large' });
    await withTimeout(c.ended, 'close after the KICK');
    return 'plain bytes refused (' + closed.length + ' bytes back), oversized package -> KICK ' +
      '"message too large" over TLS';
  } finally {
    c.sock.destroy();
  }
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const limit = setTimeout(() => {
    process.stderr.write('tls: FAIL: took more than ' + OVERALL_LIMIT_MS / 1000 + ' s\n');
    process.exit(1);
  }, OVERALL_LIMIT_MS);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pomelo-tls-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const cert = makeCertificate(dir);
  const echo = await startEcho(tlsPath, ['--heartbeat', String(HEARTBEAT_S), '--cert', cert.cert,
                                         '--key', cert.key]);
  say('# pomelo-echo-tls on ' + echo.host + ':' + echo.port);
  const checks = [
    ['the real browser client over wss://', checkWss],
    ['node tls with raw-TCP Pomelo', checkTlsTcp],
    ['bad input on the TLS port', checkBadInput],
  ];
  const results = [];
  for (const [, fn] of checks) { // one after the other: the browser client sets a global
    try {
      results.push({ ok: true, text: await fn(echo, cert) });
    } catch (e) {
      results.push({ ok: false, text: String(e.stack || e) });
    }
  }
  // Shutdown with a client of each kind connected.
  let shutdown;
  try {
    const b = browserClient(cert.ca);
    await withTimeout(new Promise((resolve) => b.pomelo.init({ host: '127.0.0.1', port: echo.port },
                                                            resolve)), 'init over wss');
    const t = tlsClient(echo.port, cert.ca);
    await t.handshake();
    const exit = await echo.stop();
    assert.strictEqual(exit, 0, 'exit status on SIGTERM: ' + exit + '\n' + echo.stderr());
    const tk = await t.kick();
    assert.deepStrictEqual(tk.body, { reason: 'server shutting down' });
    for (let i = 0; i < 50 && b.kicks.length === 0; i++) {
      await sleep(20);
    }
    assert.deepStrictEqual(b.kicks, [{ reason: 'server shutting down' }]);
    shutdown = { ok: true, text: 'SIGTERM: KICK "server shutting down" to the wss and TLS ' +
                 'clients, exit status 0' };
  } catch (e) {
    await echo.stop();
    shutdown = { ok: false, text: String(e.stack || e) };
  }
  results.push(shutdown);
  checks.push(['graceful shutdown over TLS']);
  say('1..' + results.length);
  let failed = 0;
  results.forEach((r, i) => {
    if (r.ok) {
      say('ok ' + (i + 1) + ' - ' + checks[i][0] + ': ' + r.text);
    } else {
      failed++;
      say('not ok ' + (i + 1) + ' - ' + checks[i][0]);
      say(r.text.replace(/^/gm, '# '));
    }
  });
  say('tls: ' + (results.length - failed) + ' passed, ' + failed + ' failed');
  clearTimeout(limit);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write('tls: FAIL: ' + (e.stack || e) + '\n');
  process.exit(1);
});
