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
// For these two, window.protobuf is the npm pomelo-protobuf's node entry point (the browser
// build's lib/client/protobuf.js lacks the decodeStr that this client version calls for protobuf
// bodies; the third copy below aliases it, as the demo page does). This pomelo-echo announces no
// protos and no dictionary, so bodies are JSON and routes are sent as strings.
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
// binary and final, one package per message.
//
// Then, one after the other (the client caches protos in the one localStorage of this realm):
//   protobuf-browser: a third copy, loaded as the demo page loads it (the browser branch of
//     pomelo-protocol and window.protobuf = the BROWSER build of pomelo-protobuf, with its
//     decodeStr alias), against a second pomelo-echo started with --dict, --server-protos and
//     --client-protos (files written to a temporary directory, the real config/*.json forms):
//     the handshake answer is the real server's, byte for byte (dict, routeToCode, codeToRoute,
//     dictVersion, useDict, protos {server, client, version} parsed as pomelo-protobuf parses
//     them, useProto); requests go out with the dictionary's codes, bodies of routes in the
//     client protos as the browser's protobuf (varints with wire type 2); the responses to those
//     come back as protobuf encoded by the request's route, byte for byte what the real
//     server's encoder makes, and the client reads them; a notify comes back as the push onEcho,
//     compressed (onEcho is in the dictionary) and protobuf; an sInt32 at -2^31; non-BMP text:
//     a JSON body holding "😀" (sent by the browser as CESU-8) is echoed intact, as \uD83D\uDE00
//     escapes (never 4-byte UTF-8, which the browser's decoder cannot read); protobuf strings
//     both ways as CESU-8; a route holding "😀" is repaired before the handler sees it (the
//     echo names it intact); a route outside the dictionary goes as a string, with JSON bodies;
//   stale-protos: a fourth copy, whose localStorage still holds that server's protos, against
//     the first pomelo-echo (no protos): its handshake sends their version, and the answer is the
//     empty set {"server":{},"client":{},"version":"xT9OvpsqULwrUv2IpdUD4Q=="} with useProto, so
//     the client drops the stale protos (localStorage now holds the empty set) and its request
//     on the route that was protobuf goes as JSON and is answered.
// Both pomelo-echo processes must exit with status 0 on SIGTERM (so a sanitizer report in an
// ASan build fails the test).
//
// Environment: PEER_TESTS_REQUIRED=1 fails instead of skipping (exit 77) when node_modules is
// missing. Exit status: 0 all passed, 1 a failure, 2 usage, 77 skipped.
'use strict';

const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');

const SKIP = 77;
const OVERALL_LIMIT_MS = 30000;
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
const {
  sleep, startEcho, startRelay, packages, withTimeout, wireHandshake, wireMessages, realProtos,
  dictVersion, handlerDict, freshProtobuf, describeWire, catchUncaught, hex,
} = require('./ws-wire.js');
process.noDeprecation = true; // pomelo-protocol calls the deprecated `new Buffer()`

const echoPath = process.argv[2];
if (!echoPath) {
  console.error('usage: node ' + path.basename(__filename) + ' PATH/TO/pomelo-echo');
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// The browser environment (jsclient-env.js), and the client loaded into it

const {
  say, loadClient, protocolBrowser, protocolNode, protobufBrowser, storage,
} = require('./jsclient-env.js');

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

// ---------------------------------------------------------------------------------------------
// The dictionary and protos of the second pomelo-echo (the real config/*.json forms)

const PB_ROUTE = 'connector.echo.pb'; // request: protobuf both ways
const NOTE_ROUTE = 'connector.echo.note'; // notify: protobuf, pushed back as onEcho (protobuf)
const JSON_ROUTE = 'connector.echo.json'; // request: in the dictionary, JSON both ways
const DICT_ROUTES = [PB_ROUTE, NOTE_ROUTE, JSON_ROUTE, 'onEcho'];
const TEXT_PROTO = { 'required string text': 1, 'optional sInt32 n': 2 };
const CLIENT_PROTOS = { [PB_ROUTE]: TEXT_PROTO, [NOTE_ROUTE]: TEXT_PROTO };
const SERVER_PROTOS = {
  [PB_ROUTE]: {
    'required uInt32 code': 1,
    'optional string route': 2,
    'optional Echo echo': 3,
    'message Echo': TEXT_PROTO,
  },
  onEcho: TEXT_PROTO,
};
const EMPTY_PROTOS_VERSION = 'xT9OvpsqULwrUv2IpdUD4Q=='; // of {} and {}
const SMILE = '\u{1F600}'; // 😀, outside the BMP
const SMILE_UTF8 = Buffer.from([0xf0, 0x9f, 0x98, 0x80]);
const SMILE_CESU8 = Buffer.from([0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]); // what a browser sends

// The files, in a temporary directory removed at exit.
function writeConfig() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ws-jsclient-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const file = (name, obj) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, JSON.stringify(obj, null, 2) + '\n');
    return f;
  };
  return [
    '--dict', file('dictionary.json', DICT_ROUTES),
    '--server-protos', file('serverProtos.json', SERVER_PROTOS),
    '--client-protos', file('clientProtos.json', CLIENT_PROTOS),
  ];
}

// The real server's handshake answer for a fresh client: dict, then protos (spec 4.3).
function expectedHandshake(heartbeat, dict, protos) {
  const codeToRoute = {};
  for (const [r, c] of Object.entries(dict)) {
    codeToRoute[c] = r;
  }
  return JSON.stringify({
    code: 200,
    sys: {
      heartbeat, dict, routeToCode: dict, codeToRoute, dictVersion: dictVersion(dict),
      useDict: true, protos, useProto: true,
    },
  });
}

// Whether `buf` holds `part`.
const holds = (buf, part) => Buffer.from(buf).indexOf(part) >= 0;

// The real server's encoder and decoder (pomelo-protobuf's node entry point, as
// lib/components/protobuf.js uses it), for checking the wire: one instance per side.
function serverCodec(protos) {
  const pb = freshProtobuf();
  pb.init({ encoderProtos: protos.server, decoderProtos: protos.server });
  const pbc = freshProtobuf();
  pbc.init({ encoderProtos: protos.client, decoderProtos: protos.client });
  const plainOf = (v) => JSON.parse(JSON.stringify(v));
  return {
    encodeServer: (route, obj) => Buffer.from(pb.encode(route, obj)),
    decodeClient: (route, bytes) => plainOf(pbc.decode(route, Buffer.from(bytes))),
  };
}

// The protobuf case: the demo page's client against pomelo-echo with a dictionary and protos.
async function runProtobuf(echo) {
  storage.clear();
  const pb = protobufBrowser();
  const pomelo = loadClient(protocolBrowser, pb);
  const relay = await startRelay(echo.host, echo.port);
  const protos = realProtos(SERVER_PROTOS, CLIENT_PROTOS);
  const dict = handlerDict(DICT_ROUTES);
  const codec = serverCodec(protos);
  const events = [];
  for (const ev of ['close', 'heartbeat timeout', 'io-error', 'error', 'onKick']) {
    pomelo.on(ev, (e) => events.push(ev + (e && e.code ? ' ' + e.code : '')));
  }
  const pushes = [];
  pomelo.on('onEcho', (body) => pushes.push(body));
  const request = (route, body) => withTimeout(
    new Promise((resolve) => pomelo.request(route, body, resolve)), 'response on ' + route);
  const nextPush = async () => {
    const t = Date.now();
    while (!pushes.length) {
      if (Date.now() - t > 3000) {
        throw new Error('no onEcho push in 3000 ms');
      }
      await sleep(10);
    }
    return JSON.parse(JSON.stringify(pushes.shift()));
  };
  const done = [];
  try {
    return await catchUncaught(() => protobufSteps());
  } catch (e) {
    e.message += '\n  the wire:\n' + describeWire(relay.conns[0]);
    throw e;
  } finally {
    relay.close();
  }

  async function protobufSteps() {
    await withTimeout(new Promise((resolve) => pomelo.init({ host: '127.0.0.1',
                                                             port: relay.port }, resolve)),
                      'init callback');
    const wire = relay.conns[0];
    const hsUp = wireHandshake(wire, 'c2s');
    assert.strictEqual(hsUp.json.sys.protoVersion, 0, 'a fresh client: protoVersion 0');
    const hs = wireHandshake(wire);
    assert.strictEqual(hs.text, expectedHandshake(HEARTBEAT_S, dict, protos),
                       'the handshake answer, as the real server writes it');
    assert.strictEqual(storage.get('protos'), JSON.stringify(protos), 'the client cached them');
    done.push('handshake: dict ' + JSON.stringify(dict) + ', protos ' + protos.version);

    // Every DATA message of the connection so far, by direction.
    let upSeen = 0;
    let downSeen = 0;
    const up = () => {
      const l = wireMessages(wire, 'c2s');
      const fresh = l.slice(upSeen);
      upSeen = l.length;
      return fresh;
    };
    const down = async (n = 1) => {
      for (let i = 0; i < 100 && wireMessages(wire, 's2c').length < downSeen + n; i++) {
        await sleep(10);
      }
      const l = wireMessages(wire, 's2c');
      const fresh = l.slice(downSeen);
      downSeen = l.length;
      return fresh;
    };

    // A protobuf request and its protobuf response.
    const pbBody = { text: 'hello', n: -5 };
    const r1 = await request(PB_ROUTE, pbBody);
    const pbEcho = { code: 200, route: PB_ROUTE, echo: pbBody };
    assert.deepStrictEqual(JSON.parse(JSON.stringify(r1)), pbEcho, 'the response, read');
    let [req] = up();
    assert.strictEqual(req.type, 0, 'a request');
    assert.strictEqual(req.compressRoute, 1, PB_ROUTE + ': compressed');
    assert.strictEqual(req.route, dict[PB_ROUTE], PB_ROUTE + ': its code');
    assert.strictEqual(req.body[0], 0x0a, 'the browser\'s protobuf (text: key 0a)');
    assert.strictEqual(req.body[req.body.length - 2], 0x12,
                       'the browser\'s protobuf (n, a varint, with wire type 2: key 12)');
    assert.deepStrictEqual(codec.decodeClient(PB_ROUTE, req.body), pbBody, 'the request body');
    let [resp] = await down();
    assert.strictEqual(resp.type, 2, 'a response');
    assert.strictEqual(resp.id, req.id, 'to that request');
    assert.strictEqual(hex(resp.body), hex(codec.encodeServer(PB_ROUTE, pbEcho)),
                       'the response body: the real server\'s protobuf encoding');
    done.push('request ' + PB_ROUTE + ' as code ' + req.route + ', protobuf ' + hex(req.body) +
              ' -> protobuf ' + hex(resp.body));

    // A protobuf notify, pushed back as protobuf on the compressed onEcho.
    const note = { text: 'note', n: 7 };
    pomelo.notify(NOTE_ROUTE, note);
    assert.deepStrictEqual(await nextPush(), note, 'onEcho, read');
    const [ntf] = up();
    assert.strictEqual(ntf.type, 1, 'a notify');
    assert.strictEqual(ntf.compressRoute, 1, NOTE_ROUTE + ': compressed');
    assert.strictEqual(ntf.route, dict[NOTE_ROUTE]);
    assert.deepStrictEqual(codec.decodeClient(NOTE_ROUTE, ntf.body), note, 'the notify body');
    let [push] = await down();
    assert.strictEqual(push.type, 3, 'a push');
    assert.strictEqual(push.compressRoute, 1, 'onEcho is in the dictionary: compressed');
    assert.strictEqual(push.route, dict.onEcho, 'onEcho\'s code');
    assert.strictEqual(hex(push.body), hex(codec.encodeServer('onEcho', note)),
                       'the push body: protobuf');
    done.push('notify as code ' + ntf.route + ' -> push onEcho as code ' + push.route + ', ' +
              hex(push.body));

    // The ends of sInt32.
    const edge = { text: '', n: -2147483648 };
    const r2 = await request(PB_ROUTE, edge);
    assert.deepStrictEqual(JSON.parse(JSON.stringify(r2)), { code: 200, route: PB_ROUTE,
                                                             echo: edge });
    up();
    [resp] = await down();
    assert.strictEqual(hex(resp.body), hex(codec.encodeServer(PB_ROUTE, { code: 200,
                                                                          route: PB_ROUTE,
                                                                          echo: edge })));

    // Non-BMP text in JSON: sent as CESU-8 by the browser, echoed as \u escapes.
    const jsonBody = { s: SMILE, bmp: 'caf\u00e9 \u20ac' };
    const r3 = await request(JSON_ROUTE, jsonBody);
    assert.deepStrictEqual(JSON.parse(JSON.stringify(r3)),
                           { code: 200, route: JSON_ROUTE, echo: jsonBody },
                           'a JSON body holding ' + SMILE + ', echoed intact');
    [req] = up();
    assert.strictEqual(req.route, dict[JSON_ROUTE], JSON_ROUTE + ': compressed');
    assert(holds(req.body, SMILE_CESU8), 'the browser sent CESU-8: ' + hex(req.body));
    [resp] = await down();
    const text = resp.body.toString('latin1');
    assert(/\\u[dD]83[dD]\\u[dD][eE]00/.test(text),
           'the answer to the browser holds \\uD83D\\uDE00: ' + text);
    assert(!holds(resp.body, SMILE_UTF8), 'no 4-byte UTF-8 to the browser');
    assert(!holds(resp.body, SMILE_CESU8.subarray(0, 3)), 'nor CESU-8 (JSON has escapes)');
    assert.deepStrictEqual(JSON.parse(resp.body.toString('utf8')),
                           { code: 200, route: JSON_ROUTE, echo: jsonBody });
    done.push('JSON ' + SMILE + ' -> ' + JSON.stringify(resp.body.toString('utf8')).slice(0, 90));

    // Non-BMP text in protobuf, both ways, and in a notify.
    const smileBody = { text: 'hi ' + SMILE, n: 1 };
    const r4 = await request(PB_ROUTE, smileBody);
    assert.deepStrictEqual(JSON.parse(JSON.stringify(r4)),
                           { code: 200, route: PB_ROUTE, echo: smileBody });
    [req] = up();
    assert(holds(req.body, SMILE_CESU8), 'the browser\'s protobuf string is CESU-8');
    [resp] = await down();
    assert(holds(resp.body, SMILE_CESU8), 'the protobuf answer to the browser: CESU-8, ' +
           hex(resp.body));
    assert(!holds(resp.body, SMILE_UTF8), 'not 4-byte UTF-8');
    const smileNote = { text: SMILE + ' note' };
    pomelo.notify(NOTE_ROUTE, smileNote);
    assert.deepStrictEqual(await nextPush(), smileNote, 'onEcho with ' + SMILE + ', read');
    up();
    [push] = await down();
    assert(holds(push.body, SMILE_CESU8), 'the protobuf push: CESU-8');
    done.push('protobuf ' + SMILE + ' both ways as CESU-8 (' + hex(SMILE_CESU8) + ')');

    // A route holding a non-BMP character (not in the dictionary): CESU-8 from the browser,
    // repaired before the handler sees it.
    const smileRoute = 'connector.echo.' + SMILE;
    const r5 = await request(smileRoute, { a: 1 });
    assert.deepStrictEqual(JSON.parse(JSON.stringify(r5)),
                           { code: 200, route: smileRoute, echo: { a: 1 } },
                           'the handler saw the route intact');
    [req] = up();
    assert.strictEqual(req.compressRoute, 0, 'not in the dictionary: a string');
    assert(holds(req.routeBytes, SMILE_CESU8), 'the browser sent the route as CESU-8');
    await down();

    // A route outside the dictionary and the protos: a string route, JSON.
    const other = 'connector.other.x';
    const r6 = await request(other, { a: [1, 2] });
    assert.deepStrictEqual(JSON.parse(JSON.stringify(r6)),
                           { code: 200, route: other, echo: { a: [1, 2] } });
    [req] = up();
    assert.strictEqual(req.compressRoute, 0);
    assert.strictEqual(req.route, other);
    assert.strictEqual(req.body.toString(), '{"a":[1,2]}');
    [resp] = await down();
    assert.strictEqual(resp.body.toString(), '{"code":200,"route":"' + other +
                       '","echo":{"a":[1,2]}}');
    done.push('route ' + SMILE + ' repaired; ' + other + ' as a string, JSON');
    assert.deepStrictEqual(events, [], 'no close, error or kick');
    const closed = new Promise((resolve) => pomelo.on('close', resolve));
    pomelo.disconnect();
    await withTimeout(closed, "'close' after disconnect()");
    return done.join('; ');
  }
}

// The stale cache: protos of another server in localStorage, against pomelo-echo without any.
async function runStale(echo) {
  const stale = storage.get('protos');
  assert(stale, 'the protos of the previous case are cached');
  const staleVersion = JSON.parse(stale).version;
  const pomelo = loadClient(protocolBrowser, protobufBrowser());
  const relay = await startRelay(echo.host, echo.port);
  try {
    return await catchUncaught(() => staleSteps());
  } catch (e) {
    e.message += '\n  the wire:\n' + describeWire(relay.conns[0]);
    throw e;
  } finally {
    relay.close();
  }

  async function staleSteps() {
    await withTimeout(new Promise((resolve) => pomelo.init({ host: '127.0.0.1',
                                                             port: relay.port }, resolve)),
                      'init callback');
    const wire = relay.conns[0];
    assert.strictEqual(wireHandshake(wire, 'c2s').json.sys.protoVersion, staleVersion,
                       'the client announced the cached version');
    const hs = wireHandshake(wire);
    const empty = { server: {}, client: {}, version: EMPTY_PROTOS_VERSION };
    assert.strictEqual(hs.text, JSON.stringify({ code: 200, sys: { heartbeat: HEARTBEAT_S,
                                                                   protos: empty,
                                                                   useProto: true } }),
                       'the empty set, with useProto');
    assert.strictEqual(storage.get('protos'), JSON.stringify(empty), 'the cache replaced');
    const r = await withTimeout(new Promise((resolve) =>
      pomelo.request(PB_ROUTE, { text: 'json now' }, resolve)), 'response');
    assert.deepStrictEqual(JSON.parse(JSON.stringify(r)),
                           { code: 200, route: PB_ROUTE, echo: { text: 'json now' } });
    const [req] = wireMessages(wire, 'c2s');
    assert.strictEqual(req.compressRoute, 0, 'no dictionary: a string route');
    assert.strictEqual(req.body.toString(), '{"text":"json now"}', 'JSON, not protobuf');
    const closed = new Promise((resolve) => pomelo.on('close', resolve));
    pomelo.disconnect();
    await withTimeout(closed, "'close' after disconnect()");
    return 'protoVersion ' + staleVersion + ' -> ' + hs.text + '; then JSON';
  }
}

async function main() {
  const limit = setTimeout(() => {
    process.stderr.write('ws-jsclient: FAIL: took more than ' + OVERALL_LIMIT_MS / 1000 + ' s\n');
    process.exit(1);
  }, OVERALL_LIMIT_MS);
  const t0 = Date.now();
  const echo = await startEcho(echoPath, ['--heartbeat', String(HEARTBEAT_S)]);
  const echoPb = await startEcho(echoPath, ['--heartbeat', String(HEARTBEAT_S)]
    .concat(writeConfig()));
  say('# pomelo-echo on ' + echo.host + ':' + echo.port + ' (heartbeat ' + HEARTBEAT_S +
              ' s), with a dictionary and protos on ' + echoPb.port +
              '; pomelo-jsclient-websocket ' +
              require('pomelo-jsclient-websocket/package.json').version + ', ws ' +
              require('ws/package.json').version);
  const names = clients.map((c) => c.name);
  const took = [];
  const timed = async (i, fn) => {
    const t = Date.now();
    try {
      return await fn();
    } finally {
      took[i] = ((Date.now() - t) / 1000).toFixed(1) + ' s';
    }
  };
  const results = await Promise.allSettled(clients.map((c, i) => timed(i,
                                                                       () => runClient(c, echo))));
  // One after the other: they share this realm's localStorage.
  for (const [name, fn] of [['protobuf-browser', () => runProtobuf(echoPb)],
                            ['stale-protos', () => runStale(echo)]]) {
    names.push(name);
    const i = names.length - 1;
    const prev = results.length && results[results.length - 1];
    if (name === 'stale-protos' && prev && prev.status !== 'fulfilled') {
      results.push({ status: 'rejected', reason: 'not run: it needs protobuf-browser\'s cache' });
      took[i] = '0.0 s';
      continue;
    }
    results.push(...await Promise.allSettled([timed(i, fn)]));
  }
  const exits = [await echo.stop(), await echoPb.stop()];
  say('1..' + (names.length + 1));
  let failed = 0;
  results.forEach((res, i) => {
    if (res.status === 'fulfilled') {
      say('ok ' + (i + 1) + ' - ' + names[i] + ': ' + res.value + ' (' + took[i] + ')');
    } else {
      failed++;
      say('not ok ' + (i + 1) + ' - ' + names[i] + ' (' + took[i] + ')');
      say(String(res.reason && (res.reason.stack || res.reason)).replace(/^/gm, '# '));
    }
  });
  if (exits[0] === 0 && exits[1] === 0) {
    say('ok ' + (names.length + 1) + ' - both pomelo-echo exit with status 0 on SIGTERM');
  } else {
    failed++;
    say('not ok ' + (names.length + 1) + ' - pomelo-echo exits with status 0 on ' +
                'SIGTERM: ' + exits.join(', '));
  }
  if (failed) {
    say(echo.stderr().slice(-4000).replace(/^/gm, '# pomelo-echo: '));
    say(echoPb.stderr().slice(-4000).replace(/^/gm, '# pomelo-echo (protos): '));
  }
  say('# ' + ((Date.now() - t0) / 1000).toFixed(1) + ' s in all');
  say('ws-jsclient: ' + (names.length + 1 - failed) + ' passed, ' + failed + ' failed');
  clearTimeout(limit);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write('ws-jsclient: FAIL: ' + (e.stack || e) + '\n');
  process.exit(1);
});
