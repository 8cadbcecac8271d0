// The C client (the pomelo-client tool) against the real pomelo 2.2.7 server over raw TCP.
//
//   node real-server-client.js PATH/TO/pomelo-client
//
// Starts the `pomelo init` template app (pomelo-server/start.js: heartbeat 3 s, route
// dictionary on, plus a test handler with connector.testHandler.kickMe) and checks:
//   1. handshake and `request connector.entryHandler.entry {}` -> {"code":200,"msg":"game server
//      is ok."}, the request sent with the route code from the server's dictionary;
//   2. a `script` that requests, sleeps 10 s (more than three 3 s heartbeat intervals), and
//      requests again: both answered, the client heartbeated all along, the server never closed;
//   3. the contrast: a raw socket that handshakes and never heartbeats is dropped by the same
//      server about 6 s after its ACK;
//   4. `request connector.testHandler.kickMe {}`: the server kicks with reason "bye", the tool
//      exits with status 6 and prints the reason;
//   5. a port nobody listens on: exit status 3;
//   6. protobuf (start.js gives the app config/clientProtos.json and serverProtos.json for
//      connector.testHandler.pb, which answers {"code":200,"route","echo"} and pushes onPb
//      {"text","n","d"}, and config/dictionary.json ["onPb"]): a `script` requests it and waits
//      for the push, then `connect`s again (the same client object) and does it again, then
//      requests connector.entryHandler.entry (JSON). On the wire: the first handshake answer
//      carries the dictionary and the protos (the version the real server computes, the parsed
//      form pomelo-protobuf makes); the request goes out with the route's code and a protobuf
//      body that pomelo-protobuf decodes to what the script gave (an sInt32 below 0, a repeated
//      uInt32, non-BMP text as UTF-8); the response is protobuf (encoded by the request's route)
//      and so is the push, whose route comes as onPb's code; the tool prints both as the JSON
//      the server meant. The second handshake sends the cached dictVersion and protoVersion and
//      the server answers {"code":200,"sys":{"heartbeat":3,"useDict":true,"useProto":true}}
//      (neither dict nor protos), and requests still go compressed and as protobuf, decoded
//      with the cached protos.
// The tool talks to the server through a relay in this script that records both byte streams,
// decoded with the real pomelo-protocol@0.1.6: the checks look at the wire, not only at what the
// tool prints. All checks run at once (about 11 s after the server start-up), everything bounded.
//
// Environment: PEER_TESTS_REQUIRED=1 fails instead of skipping (exit 77) when node_modules is
// missing. Exit status: 0 all passed, 1 a failure, 2 usage, 77 skipped.
'use strict';

const assert = require('assert');
const childProcess = require('child_process');
const net = require('net');
const path = require('path');

const SKIP = 77;
const OVERALL_LIMIT_MS = 90000;
const HOST = '127.0.0.1';

function skipOrFail(how) {
  if (process.env.PEER_TESTS_REQUIRED === '1') {
    console.error('real-server-client: FAIL: ' + how);
    process.exit(1);
  }
  console.log('real-server-client: SKIP: ' + how);
  process.exit(SKIP);
}

let Package, Message;
try {
  ({ Package, Message } = require('pomelo-protocol'));
} catch (e) {
  skipOrFail('node_modules is missing in ' + __dirname + ': run npm ci in tests/peers');
}
const pomeloServer = require('./pomelo-server/start.js');
const { realProtos, freshProtobuf, hex } = require('./ws-wire.js');
if (!pomeloServer.installed()) {
  skipOrFail('pomelo is not installed: run npm ci in ' + path.join(__dirname, 'pomelo-server'));
}
process.noDeprecation = true; // pomelo-protocol calls the deprecated `new Buffer()`

const clientPath = process.argv[2];
if (!clientPath) {
  console.error('usage: node ' + path.basename(__filename) + ' PATH/TO/pomelo-client');
  process.exit(2);
}

const ENTRY_ROUTE = 'connector.entryHandler.entry';
const ENTRY_RESPONSE = { code: 200, msg: 'game server is ok.' };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// A recording relay: 127.0.0.1:<port> -> the server, each package of both directions decoded.

function framer(onPackage) {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 4) {
      const len = (buf[1] << 16) | (buf[2] << 8) | buf[3];
      if (buf.length < 4 + len) {
        break;
      }
      onPackage(Buffer.from(buf.subarray(0, 4 + len)));
      buf = buf.subarray(4 + len);
    }
  };
}

function decodePackage(raw, t) {
  const pkg = Package.decode(raw);
  const body = pkg.body ? Buffer.from(pkg.body) : Buffer.alloc(0);
  const rec = { t, type: pkg.type, body };
  if (pkg.type === Package.TYPE_DATA) {
    rec.msg = Message.decode(body);
    rec.msg.body = Buffer.from(rec.msg.body);
  } else if (pkg.type === Package.TYPE_HANDSHAKE || pkg.type === Package.TYPE_KICK) {
    try {
      rec.json = JSON.parse(body.toString('utf8'));
    } catch (e) {
      rec.json = undefined;
    }
  }
  return rec;
}

function startRelay(upstreamPort) {
  const conns = [];
  const sockets = new Set();
  const server = net.createServer((client) => {
    const start = Date.now();
    const conn = { c2s: [], s2c: [], closedBy: null, closedAt: null };
    conns.push(conn);
    const upstream = net.connect(upstreamPort, HOST);
    sockets.add(client);
    sockets.add(upstream);
    const closed = (by) => () => {
      if (!conn.closedBy) {
        conn.closedBy = by;
        conn.closedAt = Date.now() - start;
      }
      client.destroy();
      upstream.destroy();
    };
    const c2s = framer((raw) => conn.c2s.push(decodePackage(raw, Date.now() - start)));
    const s2c = framer((raw) => conn.s2c.push(decodePackage(raw, Date.now() - start)));
    client.on('data', (d) => {
      c2s(d);
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      s2c(d);
      client.write(d);
    });
    client.on('end', closed('client'));
    client.on('error', closed('client'));
    client.on('close', closed('client'));
    upstream.on('end', closed('server'));
    upstream.on('error', closed('server'));
    upstream.on('close', closed('server'));
  });
  return new Promise((resolve) => {
    server.listen(0, HOST, () => {
      resolve({
        port: server.address().port,
        conns,
        close: () => {
          for (const s of sockets) {
            s.destroy();
          }
          server.close();
        },
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Running the tool (bounded)

// Every pomelo-client still running, killed if this script ends first (a failure, a time limit).
const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    c.kill('SIGKILL');
  }
});

function runClient(args, input, timeoutMs) {
  return new Promise((resolve) => {
    const child = childProcess.spawn(clientPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    child.on('exit', () => children.delete(child));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.on('error', () => {}); // the tool may not read its input
    child.stdin.end(input || '');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr: stderr + e.message });
    });
    // 'close' (not 'exit'): it comes after the child's stdout and stderr have been read to the end.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, args });
    });
  });
}

function jsonLines(text) {
  const out = [];
  for (const line of text.split('\n')) {
    try {
      out.push(JSON.parse(line));
    } catch (e) {
      // not a JSON line
    }
  }
  return out;
}

function describeRun(r) {
  return 'pomelo-client ' + (r.args || []).join(' ') + '\n  exit ' + r.code +
         (r.signal ? ' (signal ' + r.signal + ')' : '') + '\n  stdout: ' +
         JSON.stringify(r.stdout) + '\n  stderr: ' + JSON.stringify(r.stderr.slice(-2000));
}

function describeWire(conn) {
  if (!conn) {
    return 'no connection reached the relay';
  }
  const all = conn.c2s.map((p) => ({ p, dir: 'c2s' }))
    .concat(conn.s2c.map((p) => ({ p, dir: 's2c' })));
  const lines = all.sort((a, b) => a.p.t - b.p.t)
    .map(({ p, dir }) => {
      let what = p.type + ' ' + p.body.toString('utf8').slice(0, 80);
      if (p.msg) {
        const b = p.msg.body;
        const text = b.toString('utf8');
        const printable = Buffer.from(text, 'utf8').equals(b) && !/[\x00-\x1f]/.test(text);
        what = 'data type=' + p.msg.type + ' id=' + p.msg.id + ' route=' + p.msg.route +
               (p.msg.compressRoute ? ' (code)' : '') + ' ' + (printable ? text : hex(b));
      }
      return '    +' + String(p.t).padStart(6) + 'ms ' + dir + ' ' + what;
    });
  lines.push('    closed by ' + conn.closedBy + ' at ' + conn.closedAt + ' ms');
  return lines.join('\n');
}

const PKG = { HANDSHAKE: 1, ACK: 2, HEARTBEAT: 3, DATA: 4, KICK: 5 };

// The dictionary the server sent in its handshake response (route -> code).
function serverDict(conn) {
  const hs = conn.s2c.find((p) => p.type === PKG.HANDSHAKE);
  assert.ok(hs && hs.json && hs.json.code === 200, 'a handshake response with code 200');
  assert.ok(hs.json.sys && hs.json.sys.heartbeat === 3, 'the server announced heartbeat 3');
  assert.ok(hs.json.sys.dict && hs.json.sys.useDict, 'the server sent its route dictionary');
  return hs.json.sys.dict;
}

// ---------------------------------------------------------------------------------------------
// The checks

async function checkRequest(srv) {
  const relay = await startRelay(srv.port);
  try {
    const r = await runClient(['-v', '--host', HOST, '--port', String(relay.port), '--tcp',
      '--timeout', '5', 'request', ENTRY_ROUTE, '{}'], '', 20000);
    const conn = relay.conns[0];
    try {
      assert.strictEqual(r.code, 0, 'exit status 0');
      const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
      assert.strictEqual(lines.length, 1, 'one line on stdout');
      assert.deepStrictEqual(JSON.parse(lines[0]), ENTRY_RESPONSE, 'the response body');
      const dict = serverDict(conn);
      assert.ok(conn.c2s.some((p) => p.type === PKG.ACK), 'the client sent the ACK');
      const req = conn.c2s.find((p) => p.type === PKG.DATA);
      assert.ok(req && req.msg.type === Message.TYPE_REQUEST, 'a request on the wire');
      assert.strictEqual(req.msg.compressRoute, 1, 'the route was compressed');
      assert.strictEqual(req.msg.route, dict[ENTRY_ROUTE], 'with the dictionary code');
      assert.strictEqual(req.msg.body.toString('utf8'), '{}', 'the request body');
    } catch (e) {
      e.message += '\n' + describeRun(r) + '\n' + describeWire(conn);
      throw e;
    }
    const code = conn.c2s.find((p) => p.type === PKG.DATA).msg.route;
    return 'handshake ok, request ' + ENTRY_ROUTE + ' -> ' + r.stdout.trim() +
           ' (route sent as dictionary code ' + code + ')';
  } finally {
    relay.close();
  }
}

async function checkHeartbeats(srv) {
  const relay = await startRelay(srv.port);
  try {
    const script = [
      'connect ' + HOST + ' ' + relay.port + ' tcp',
      'request ' + ENTRY_ROUTE + ' {}',
      'sleep 10',
      'request ' + ENTRY_ROUTE + ' {}',
      'close',
      '',
    ].join('\n');
    const r = await runClient(['-v', '--timeout', '20', 'script'], script, 40000);
    const conn = relay.conns[0];
    let hbs;
    try {
      assert.strictEqual(r.code, 0, 'exit status 0');
      const answers = jsonLines(r.stdout).filter((o) => o && o.code === 200);
      assert.strictEqual(answers.length, 2, 'two responses printed');
      for (const a of answers) {
        assert.deepStrictEqual(a, ENTRY_RESPONSE, 'the response body');
      }
      serverDict(conn);
      const reqs = conn.c2s.filter((p) => p.type === PKG.DATA);
      const resps = conn.s2c.filter((p) => p.type === PKG.DATA);
      assert.strictEqual(reqs.length, 2, 'two requests on the wire');
      assert.strictEqual(resps.length, 2, 'two responses on the wire');
      assert.ok(reqs[1].t - reqs[0].t >= 9500, 'the second request came ~10 s after the first');
      hbs = conn.c2s.filter((p) => p.type === PKG.HEARTBEAT).map((p) => p.t);
      const between = hbs.filter((t) => t > reqs[0].t && t < reqs[1].t);
      assert.ok(between.length >= 3, 'at least 3 client heartbeats during the 10 s sleep');
      const times = [conn.c2s.find((p) => p.type === PKG.ACK).t].concat(hbs);
      for (let i = 1; i < times.length; i++) {
        assert.ok(times[i] - times[i - 1] < 4500, 'client heartbeats less than 4.5 s apart');
      }
      const serverHbs = conn.s2c.filter((p) => p.type === PKG.HEARTBEAT).length;
      assert.ok(serverHbs >= hbs.length, 'the server answered every client heartbeat');
      assert.strictEqual(conn.closedBy, 'client', 'the client closed, not the server');
    } catch (e) {
      e.message += '\n' + describeRun(r) + '\n' + describeWire(conn);
      throw e;
    }
    return 'two requests 10 s apart both answered; client heartbeats at ' +
           hbs.map((t) => (t / 1000).toFixed(1) + ' s').join(', ') +
           ' (each echoed); closed by the client after ' + (conn.closedAt / 1000).toFixed(1) + ' s';
  } finally {
    relay.close();
  }
}

// A raw socket that handshakes like the JS client and then stays silent.
async function checkSilentClientDropped(srv) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(srv.port, HOST);
    const start = Date.now();
    let ackAt = null;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('the server did not close the silent client within 11 s'));
    }, 11000);
    let got = '';
    sock.on('connect', () => {
      const sys = { type: 'js-websocket', version: '0.0.1', rsa: {}, protoVersion: 0 };
      sock.write(Package.encode(Package.TYPE_HANDSHAKE, Buffer.from(JSON.stringify({ sys }))));
    });
    sock.on('data', framer((raw) => {
      got += raw[0] + ' ';
      if (raw[0] === PKG.HANDSHAKE && ackAt === null) {
        ackAt = Date.now();
        sock.write(Package.encode(Package.TYPE_HANDSHAKE_ACK));
      }
    }));
    const done = () => {
      clearTimeout(timer);
      if (ackAt === null) {
        reject(new Error('closed before the handshake'));
        return;
      }
      const after = Date.now() - ackAt;
      if (after < 5400 || after > 6600) {
        reject(new Error('closed ' + after + ' ms after the ACK, not ~6000 (got ' + got + ')'));
      } else {
        resolve('a raw client that never heartbeats is closed by the server ' + after +
                ' ms after its ACK (connection lived ' + (Date.now() - start) + ' ms)');
      }
    };
    sock.on('close', done);
    sock.on('error', () => {});
  });
}

async function checkKick(srv) {
  const relay = await startRelay(srv.port);
  try {
    const r = await runClient(['-v', '--host', HOST, '--port', String(relay.port), '--tcp',
      '--timeout', '5', 'request', 'connector.testHandler.kickMe', '{}'], '', 20000);
    const conn = relay.conns[0];
    try {
      assert.strictEqual(r.code, 6, 'exit status 6 (kicked)');
      assert.ok(/\bbye\b/.test(r.stdout + r.stderr), 'the reason "bye" printed');
      const kick = conn.s2c.find((p) => p.type === PKG.KICK);
      assert.ok(kick && kick.json && kick.json.reason === 'bye', 'KICK {"reason":"bye"} sent');
    } catch (e) {
      e.message += '\n' + describeRun(r) + '\n' + describeWire(conn);
      throw e;
    }
    const said = (r.stdout + r.stderr).split('\n').find((l) => /\bbye\b/.test(l));
    return 'kickMe: KICK {"reason":"bye"} on the wire; exit status 6, printed: ' + said.trim();
  } finally {
    relay.close();
  }
}

async function checkCannotConnect() {
  // A port that was free a moment ago: nobody listens there.
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, HOST, () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  const r = await runClient(['--host', HOST, '--port', String(port), '--tcp', '--timeout', '5',
    'request', ENTRY_ROUTE, '{}'], '', 20000);
  assert.strictEqual(r.code, 3, 'exit status 3 (cannot connect)\n' + describeRun(r));
  return 'nobody on port ' + port + ': exit status 3';
}

// Over WebSocket (the real server serves both on one port): the tool's own results, the same
// routes, the heartbeat timeout proved by the 10 s gap (the server drops a silent client at 6 s).

async function checkWsRequest(srv) {
  const r = await runClient(['--host', HOST, '--port', String(srv.port), '--ws', '--timeout', '5',
    'request', ENTRY_ROUTE, '{}'], '', 20000);
  assert.strictEqual(r.code, 0, 'exit status 0\n' + describeRun(r));
  assert.deepStrictEqual(JSON.parse(r.stdout.trim()), ENTRY_RESPONSE, 'the response body');
  return 'request over WebSocket -> ' + r.stdout.trim();
}

async function checkWsHeartbeats(srv) {
  const script = [
    'connect ' + HOST + ' ' + srv.port + ' ws',
    'request ' + ENTRY_ROUTE + ' {}',
    'sleep 10',
    'request ' + ENTRY_ROUTE + ' {}',
    'close',
    '',
  ].join('\n');
  const r = await runClient(['--timeout', '20', 'script'], script, 40000);
  assert.strictEqual(r.code, 0, 'exit status 0\n' + describeRun(r));
  const answers = jsonLines(r.stdout).filter((o) => o && o.code === 200);
  assert.strictEqual(answers.length, 2, 'two responses printed\n' + describeRun(r));
  return 'over WebSocket: two requests 10 s apart both answered (heartbeats kept it alive)';
}

async function checkWsKick(srv) {
  const r = await runClient(['--host', HOST, '--port', String(srv.port), '--ws', '--timeout', '5',
    'request', 'connector.testHandler.kickMe', '{}'], '', 20000);
  assert.strictEqual(r.code, 6, 'exit status 6 (kicked)\n' + describeRun(r));
  assert.ok(/\bbye\b/.test(r.stdout + r.stderr), 'the reason "bye" printed\n' + describeRun(r));
  return 'kicked over WebSocket: exit status 6';
}

// Protobuf with the real server: connector.testHandler.pb (pomelo-server/start.js).
const PB_ROUTE = 'connector.testHandler.pb';

async function checkProtobuf(srv) {
  const relay = await startRelay(srv.port);
  const protos = realProtos(pomeloServer.TEST_PROTOS.server, pomeloServer.TEST_PROTOS.client);
  const server = freshProtobuf(); // the real server's codec: decodes requests, encodes answers
  server.init({ encoderProtos: protos.server, decoderProtos: protos.client });
  const client = freshProtobuf(); // a client's: decodes answers and pushes
  client.init({ encoderProtos: protos.client, decoderProtos: protos.server });
  const smile = '\u{1F600}';
  const bodies = [
    { text: 'hello', n: -3, list: [1, 300] },
    { text: 'again ' + smile, n: 2147483647 },
  ];
  try {
    const script = [
      'connect ' + HOST + ' ' + relay.port + ' tcp',
      'request ' + PB_ROUTE + ' ' + JSON.stringify(bodies[0]),
      'wait onPb 5',
      'connect ' + HOST + ' ' + relay.port + ' tcp',
      'request ' + PB_ROUTE + ' ' + JSON.stringify(bodies[1]),
      'wait onPb 5',
      'request ' + ENTRY_ROUTE + ' {}',
      'close',
      '',
    ].join('\n');
    const r = await runClient(['-v', '--timeout', '5', 'script'], script, 30000);
    const [c1, c2] = relay.conns;
    const said = [];
    try {
      assert.strictEqual(r.code, 0, 'exit status 0');
      const printed = jsonLines(r.stdout);
      const expected = [];
      for (const b of bodies) {
        expected.push({ code: 200, route: PB_ROUTE, echo: b });
        expected.push({ route: 'onPb', body: { text: b.text, n: b.n, d: 0.5 } });
      }
      expected.push(ENTRY_RESPONSE);
      assert.deepStrictEqual(printed, expected, 'what pomelo-client printed');
      assert.strictEqual(relay.conns.length, 2, 'two connections (connect, connect)');

      // The first connection: a fresh client.
      const up1 = c1.c2s.find((p) => p.type === PKG.HANDSHAKE).json;
      assert.ok(!up1.sys.dictVersion && !up1.sys.protoVersion, 'nothing cached yet: ' +
                JSON.stringify(up1.sys));
      const dict = serverDict(c1);
      const hs1 = c1.s2c.find((p) => p.type === PKG.HANDSHAKE).json;
      assert.deepStrictEqual(hs1.sys.protos, protos, 'the protos, parsed, with their version');
      assert.strictEqual(hs1.sys.useProto, true);
      assert.ok(dict[PB_ROUTE] && dict.onPb, 'both routes in the dictionary');
      said.push('handshake: dict ' + hs1.sys.dictVersion + ' (' + PB_ROUTE + ' = ' +
                dict[PB_ROUTE] + ', onPb = ' + dict.onPb + '), protos ' + protos.version);

      const checkExchange = (conn, body, n) => {
        const req = conn.c2s.find((p) => p.type === PKG.DATA &&
                                  p.msg.type === Message.TYPE_REQUEST);
        assert.ok(req, 'a request on connection ' + n);
        assert.strictEqual(req.msg.compressRoute, 1, 'the route compressed');
        assert.strictEqual(req.msg.route, dict[PB_ROUTE], 'with its code');
        assert.notStrictEqual(req.msg.body[0], 0x7b, 'not JSON: ' + hex(req.msg.body));
        assert.deepStrictEqual(JSON.parse(JSON.stringify(server.decode(PB_ROUTE, req.msg.body))),
                               body, 'the protobuf request body, decoded by pomelo-protobuf');
        const resp = conn.s2c.find((p) => p.type === PKG.DATA &&
                                   p.msg.type === Message.TYPE_RESPONSE && p.msg.id === req.msg.id);
        assert.ok(resp, 'its response');
        assert.strictEqual(hex(resp.msg.body),
                           hex(server.encode(PB_ROUTE, { code: 200, route: PB_ROUTE, echo: body })),
                           'the response: protobuf');
        const push = conn.s2c.find((p) => p.type === PKG.DATA && p.msg.type === Message.TYPE_PUSH);
        assert.ok(push, 'the push');
        assert.strictEqual(push.msg.compressRoute, 1, 'onPb: compressed');
        assert.strictEqual(push.msg.route, dict.onPb, 'onPb\'s code');
        assert.deepStrictEqual(JSON.parse(JSON.stringify(client.decode('onPb', push.msg.body))),
                               { text: body.text, n: body.n, d: 0.5 }, 'the push: protobuf');
        return 'request as code ' + req.msg.route + ' ' + hex(req.msg.body) + ' -> ' +
          hex(resp.msg.body).slice(0, 30) + '...';
      };
      said.push(checkExchange(c1, bodies[0], 1));

      // The second connection: the client sends what it cached, the server sends neither.
      const up2 = c2.c2s.find((p) => p.type === PKG.HANDSHAKE).json;
      assert.strictEqual(up2.sys.dictVersion, hs1.sys.dictVersion, 'the cached dictVersion');
      assert.strictEqual(up2.sys.protoVersion, protos.version, 'the cached protoVersion');
      const hs2 = c2.s2c.find((p) => p.type === PKG.HANDSHAKE);
      assert.strictEqual(hs2.body.toString('utf8'),
                         '{"code":200,"sys":{"heartbeat":3,"useDict":true,"useProto":true}}',
                         'the answer to a client with both cached');
      said.push('second handshake with both versions -> ' + hs2.body.toString('utf8'));
      said.push(checkExchange(c2, bodies[1], 2));
      assert.ok(req2Bytes(c2, smile), 'non-BMP text sent as UTF-8 (f0 9f 98 80)');
      const entry = c2.c2s.filter((p) => p.type === PKG.DATA)[1];
      assert.ok(entry && entry.msg.compressRoute === 1 && entry.msg.route === dict[ENTRY_ROUTE],
                ENTRY_ROUTE + ' compressed with the cached dictionary');
      assert.strictEqual(entry.msg.body.toString('utf8'), '{}', 'JSON (not in the protos)');
    } catch (e) {
      e.message += '\n' + describeRun(r) + '\n' + describeWire(c1) + '\n' + describeWire(c2);
      throw e;
    }
    return said.join('; ');
  } finally {
    relay.close();
  }
}

// Whether the protobuf request of `conn` holds `text` as UTF-8.
function req2Bytes(conn, text) {
  const req = conn.c2s.find((p) => p.type === PKG.DATA);
  return req && req.msg.body.indexOf(Buffer.from(text, 'utf8')) >= 0;
}

async function main() {
  const limit = setTimeout(() => {
    console.error('real-server-client: FAIL: took more than ' + OVERALL_LIMIT_MS / 1000 + ' s');
    process.exit(1);
  }, OVERALL_LIMIT_MS);
  const t0 = Date.now();
  const srv = await pomeloServer.startPomeloServer();
  console.log('# pomelo 2.2.7 template app on ' + srv.host + ':' + srv.port + ' (started in ' +
              (Date.now() - t0) + ' ms)');
  const checks = [
    ['request through the dictionary', checkRequest],
    ['heartbeats keep the connection alive', checkHeartbeats],
    ['a silent client is dropped', checkSilentClientDropped],
    ['kicked by the server', checkKick],
    ['cannot connect', checkCannotConnect],
    ['request over WebSocket', checkWsRequest],
    ['heartbeats over WebSocket', checkWsHeartbeats],
    ['kicked over WebSocket', checkWsKick],
    ['protobuf, and the cached dictionary and protos on a second connect', checkProtobuf],
  ];
  const took = [];
  const results = await Promise.allSettled(checks.map(async ([, fn], i) => {
    const t = Date.now();
    try {
      return await fn(srv);
    } finally {
      took[i] = ((Date.now() - t) / 1000).toFixed(1) + ' s';
    }
  }));
  await srv.stop();
  console.log('1..' + checks.length);
  let failed = 0;
  results.forEach((res, i) => {
    if (res.status === 'fulfilled') {
      console.log('ok ' + (i + 1) + ' - ' + checks[i][0] + ': ' + res.value + ' (' + took[i] + ')');
    } else {
      failed++;
      console.log('not ok ' + (i + 1) + ' - ' + checks[i][0] + ' (' + took[i] + ')');
      console.log(String(res.reason && res.reason.message).replace(/^/gm, '# '));
    }
  });
  console.log('# ' + ((Date.now() - t0) / 1000).toFixed(1) + ' s in all');
  console.log('real-server-client: ' + (checks.length - failed) + ' passed, ' + failed + ' failed');
  clearTimeout(limit);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error('real-server-client: FAIL: ' + (e.stack || e));
  process.exit(1);
});
