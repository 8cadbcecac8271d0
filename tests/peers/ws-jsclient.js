// The real browser client, pomelo-jsclient-websocket@0.1.1 from npm, run in node against
// examples/pomelo-echo over WebSocket.
//
//   node ws-jsclient.js PATH/TO/pomelo-echo
//
// The client (node_modules/pomelo-jsclient-websocket/lib/pomelo-client.js, loaded as installed,
// neither changed nor copied) is an IIFE that takes everything from `window` when it is loaded:
// window.Protocol (pomelo-protocol), window.protobuf (pomelo-protobuf), window.EventEmitter
// (it does Object.create(EventEmitter.prototype), which node's `events` supports: the listener
// table is created on first use), window.localStorage (where it caches protos), and the global
// WebSocket (here the `ws` package, whose WebSocket has the browser's onopen/onmessage/
// binaryType = 'arraybuffer' interface). `window` is globalThis.
//
// pomelo-protocol picks its byte type when it is loaded: Uint8Array with its own UTF-8 codec
// when `window` exists (what a browser runs), Buffer otherwise (what a node program gets). The
// client is loaded twice, once with each, and both copies run at once:
//   browser-protocol: pomelo-protocol loaded after `window` was defined (Uint8Array);
//   node-protocol:    pomelo-protocol loaded before (Buffer).
// window.protobuf is the npm pomelo-protobuf (its node entry point; the browser build's
// lib/client/protobuf.js lacks the decodeStr that this client version calls for protobuf
// bodies). pomelo-echo announces no protos and no dictionary, so bodies are JSON and routes are
// sent as strings.
//
// Each client talks to pomelo-echo (heartbeat 1 s, to keep the run short) through its own
// recording relay, and:
//   1. pomelo.init({host, port}) -> the callback runs; on the wire the handshake is the real
//      browser's 75-byte body (spec 4.2) and pomelo-echo answers code 200, heartbeat 1;
//   2. pomelo.request('connector.entryHandler.entry', {a: 1}) -> {"code":200,"route":...,
//      "echo":{"a":1}};
//   3. pomelo.on('onEcho') + pomelo.notify('chat.chatHandler.send', {x: 'y'}) -> the push;
//   4. no traffic but the client's heartbeats for 4.5 s (4.5 intervals; pomelo-echo drops a
//      client that is silent for 2), then another request, answered. On the wire, during the
//      quiet time: at least 4 client heartbeats, each less than 1.5 intervals after the previous
//      one, each echoed by the server within 500 ms; the client never emitted 'close',
//      'disconnect', 'heartbeat timeout', 'io-error' or 'error', and the server sent no close
//      frame and no FIN;
//   5. pomelo.disconnect(): the client's close frame is answered by the server's (1000), then the
//      server closes the TCP connection; the client emits 'close'.
// Every frame on the wire is checked too: client frames masked, server frames unmasked, all
// binary and final, one package per message. pomelo-echo must exit with status 0 on SIGTERM (so
// a sanitizer report in an ASan build fails the test).
//
// Environment: PEER_TESTS_REQUIRED=1 fails instead of skipping (exit 77) when node_modules is
// missing. Exit status: 0 all passed, 1 a failure, 2 usage, 77 skipped.
'use strict';

const assert = require('assert');
const path = require('path');

const SKIP = 77;
const OVERALL_LIMIT_MS = 20000;
const HEARTBEAT_S = 1;
const QUIET_MS = 4500;
const ROUTE = 'connector.entryHandler.entry';

function skipOrFail(how) {
  if (process.env.PEER_TESTS_REQUIRED === '1') {
    console.error('ws-jsclient: FAIL: ' + how);
    process.exit(1);
  }
  console.log('ws-jsclient: SKIP: ' + how);
  process.exit(SKIP);
}

try {
  for (const m of ['pomelo-jsclient-websocket', 'pomelo-protocol', 'pomelo-protobuf', 'ws']) {
    require.resolve(m);
  }
} catch (e) {
  skipOrFail('node_modules is missing in ' + __dirname + ': run npm ci in tests/peers');
}
const { sleep, startEcho, startRelay, packages, withTimeout } = require('./ws-wire.js');
process.noDeprecation = true; // pomelo-protocol calls the deprecated `new Buffer()`

const echoPath = process.argv[2];
if (!echoPath) {
  console.error('usage: node ' + path.basename(__filename) + ' PATH/TO/pomelo-echo');
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// The browser environment (jsclient-env.js), and the client loaded into it

const { say, loadClient, protocolBrowser, protocolNode } = require('./jsclient-env.js');

const clients = [
  { name: 'browser-protocol', pomelo: loadClient(protocolBrowser) },
  { name: 'node-protocol', pomelo: loadClient(protocolNode) },
];

// ---------------------------------------------------------------------------------------------

// Runs one client through the scenario; returns a summary line. Throws on a failed check.
async function runClient({ pomelo }, echo) {
  const relay = await startRelay(echo.host, echo.port);
  const events = [];
  for (const ev of ['close', 'disconnect', 'heartbeat timeout', 'io-error', 'error', 'onKick']) {
    pomelo.on(ev, (e) => events.push({ t: relay.now(), ev, code: e && e.code }));
  }
  const request = (body) =>
    withTimeout(new Promise((resolve) => pomelo.request(ROUTE, body, resolve)), 'response');
  try {
    // 1. init
    const params = { host: '127.0.0.1', port: relay.port };
    await withTimeout(new Promise((resolve) => pomelo.init(params, resolve)), 'init callback');
    const wire = relay.conns[0];

    // 2. request
    const r1 = await request({ a: 1 });
    assert.deepStrictEqual(r1, { code: 200, route: ROUTE, echo: { a: 1 } });

    // 3. notify -> push
    const pushed = new Promise((resolve) => pomelo.on('onEcho', resolve));
    pomelo.notify('chat.chatHandler.send', { x: 'y' });
    assert.deepStrictEqual(await withTimeout(pushed, 'onEcho push'), { x: 'y' });

    // 4. quiet time: only heartbeats
    const quietFrom = relay.now();
    await sleep(QUIET_MS);
    const quietTo = relay.now();
    const r2 = await request({ again: true });
    assert.deepStrictEqual(r2, { code: 200, route: ROUTE, echo: { again: true } });
    assert.deepStrictEqual(events, [], 'no close, disconnect or error event before disconnect()');
    assert.strictEqual(wire.s2c.closeFrame(), null, 'no close frame from the server');
    assert.strictEqual(wire.serverEndAt, null, 'the server did not close the connection');

    // 5. disconnect
    const disconnectAt = relay.now();
    const closed = new Promise((resolve) => pomelo.on('close', resolve));
    pomelo.disconnect();
    const closeEvent = await withTimeout(closed, "'close' event after disconnect()");
    for (let i = 0; i < 50 && wire.serverEndAt === null; i++) {
      await sleep(20);
    }

    // The wire.
    assert.match(wire.c2s.head, /^GET \/ HTTP\/1\.1\r\n/);
    assert.match(wire.s2c.head, /^HTTP\/1\.1 101 /);
    for (const f of wire.c2s.frames) {
      assert(f.masked && f.fin && f.rsv === 0, 'client frames: masked, final, no RSV bits');
    }
    for (const f of wire.s2c.frames) {
      assert(!f.masked && f.fin && f.rsv === 0, 'server frames: unmasked, final, no RSV bits');
    }
    const pkgs = (dir) => wire[dir].messages().map((m) => {
      assert.strictEqual(m.opcode, 2, dir + ': binary messages');
      const { packages: l, rest } = packages(m.payload);
      assert(l.length === 1 && rest === 0, dir + ': one package per message');
      return Object.assign({ t: m.t }, l[0]);
    });
    const up = pkgs('c2s');
    const down = pkgs('s2c');
    assert.strictEqual(up[0].type, 1, 'the client starts with a handshake');
    assert.strictEqual(up[0].body.toString(),
                       '{"sys":{"type":"js-websocket","version":"0.0.1","rsa":{},' +
                       '"protoVersion":0}}', 'the browser client\'s handshake (spec 4.2)');
    assert.strictEqual(down[0].type, 1);
    const hs = JSON.parse(down[0].body.toString());
    assert.strictEqual(hs.code, 200);
    assert.strictEqual(hs.sys.heartbeat, HEARTBEAT_S);
    assert.strictEqual(up[1].type, 2, 'then the ACK');
    assert.strictEqual(down[1].type, 3, 'the server heartbeats right after the ACK');

    const inQuiet = (p) => p.type === 3 && p.t >= quietFrom && p.t <= quietTo;
    const hbUp = up.filter(inQuiet);
    const hbDown = down.filter(inQuiet);
    for (const p of up.concat(down)) {
      if (p.type === 3) {
        assert.strictEqual(p.body.length, 0, 'heartbeats are empty');
      }
    }
    assert(hbUp.length >= 4, 'at least 4 client heartbeats in ' + QUIET_MS + ' ms: ' +
           hbUp.length);
    const allUp = up.filter((p) => p.type === 3);
    let maxGap = 0;
    for (let i = 1; i < allUp.length; i++) {
      maxGap = Math.max(maxGap, allUp[i].t - allUp[i - 1].t);
    }
    assert(maxGap <= 1.5 * HEARTBEAT_S * 1000, 'client heartbeat gap ' + maxGap + ' ms');
    let maxEcho = 0;
    for (const h of hbUp) {
      const echoHb = down.find((p) => p.type === 3 && p.t >= h.t);
      assert(echoHb && echoHb.t - h.t <= 500, 'each client heartbeat echoed within 500 ms');
      maxEcho = Math.max(maxEcho, echoHb.t - h.t);
    }

    const cc = wire.c2s.closeFrame();
    const sc = wire.s2c.closeFrame();
    assert(cc && cc.t >= disconnectAt, 'the client sent a close frame on disconnect()');
    assert(sc && sc.t >= cc.t && sc.code === 1000,
           'the server answered with close 1000: ' + JSON.stringify(sc));
    assert(wire.serverEndAt !== null && wire.serverEndAt >= sc.t, 'then closed the connection');
    assert.deepStrictEqual(events.map((e) => e.ev), ['close', 'disconnect'],
                           'only close and disconnect, after disconnect()');
    return 'init, request, push, ' + hbUp.length + ' client / ' + hbDown.length +
      ' server heartbeats in ' + (quietTo - quietFrom) + ' ms (largest gap ' + maxGap +
      ' ms, echoed within ' + maxEcho + ' ms), request; close ' +
      (cc.code === null ? '(no code)' : cc.code) + ' -> ' + sc.code + ', close event code ' +
      closeEvent.code;
  } finally {
    relay.close();
  }
}

async function main() {
  const limit = setTimeout(() => {
    process.stderr.write('ws-jsclient: FAIL: took more than ' + OVERALL_LIMIT_MS / 1000 + ' s\n');
    process.exit(1);
  }, OVERALL_LIMIT_MS);
  const t0 = Date.now();
  const echo = await startEcho(echoPath, ['--heartbeat', String(HEARTBEAT_S)]);
  say('# pomelo-echo on ' + echo.host + ':' + echo.port + ' (heartbeat ' + HEARTBEAT_S +
              ' s); pomelo-jsclient-websocket ' +
              require('pomelo-jsclient-websocket/package.json').version + ', ws ' +
              require('ws/package.json').version);
  const took = [];
  const results = await Promise.allSettled(clients.map(async (c, i) => {
    const t = Date.now();
    try {
      return await runClient(c, echo);
    } finally {
      took[i] = ((Date.now() - t) / 1000).toFixed(1) + ' s';
    }
  }));
  const exit = await echo.stop();
  say('1..' + (clients.length + 1));
  let failed = 0;
  results.forEach((res, i) => {
    if (res.status === 'fulfilled') {
      say('ok ' + (i + 1) + ' - ' + clients[i].name + ': ' + res.value + ' (' + took[i] +
                  ')');
    } else {
      failed++;
      say('not ok ' + (i + 1) + ' - ' + clients[i].name + ' (' + took[i] + ')');
      say(String(res.reason && (res.reason.stack || res.reason)).replace(/^/gm, '# '));
    }
  });
  if (exit === 0) {
    say('ok ' + (clients.length + 1) + ' - pomelo-echo exits with status 0 on SIGTERM');
  } else {
    failed++;
    say('not ok ' + (clients.length + 1) + ' - pomelo-echo exits with status 0 on ' +
                'SIGTERM: ' + exit);
    say(echo.stderr().slice(-4000).replace(/^/gm, '# '));
  }
  say('# ' + ((Date.now() - t0) / 1000).toFixed(1) + ' s in all');
  say('ws-jsclient: ' + (clients.length + 1 - failed) + ' passed, ' + failed + ' failed');
  clearTimeout(limit);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write('ws-jsclient: FAIL: ' + (e.stack || e) + '\n');
  process.exit(1);
});
