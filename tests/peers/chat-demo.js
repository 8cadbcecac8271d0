// The chat demo end to end: examples/chat/pomelo-chat with the real browser client
// (pomelo-jsclient-websocket@0.1.1) loaded the way the demo page loads it, and with raw-TCP
// clients.
//
//   node chat-demo.js PATH/TO/pomelo-chat [PATH/TO/pomelo-client]
//
// 1. The page (examples/chat/web): index.html, the files it references (scripts and style sheet)
//    exist, the three npm libraries are referenced under node_modules/ and installed there (npm ci
//    in examples/chat/web) at the versions pinned in its package.json and package-lock.json, the
//    same as tests/peers'. (chat-browser.js runs the page itself in headless Chromium.)
// 2. Each browser user is one vm context that plays the page: `window` is the context's global
//    object, and the page's scripts run in it in the order of index.html, inline ones included:
//    emitter.js (the page's EventEmitter), pomelo-protocol's browser branch (window.Protocol,
//    Uint8Array), pomelo-protobuf's browser build (window.protobuf), the client (window.pomelo)
//    and app.js, whose DOM-free half (window.chatClient: connect, request, login through gate
//    and connector, send) drives the client here; it stops before its DOM half since the context
//    has no `document`. One context per user: the client keeps its state in module-level
//    variables. WebSocket is the `ws` package (the browser's onopen/onmessage interface).
// 3. The chat, as chatofpomelo behaves (spec section 9): the gate's queryEntry ({"code":200,
//    "host","port"}, and {"code":500} without a uid); alice and bob enter room1 (users lists,
//    onAdd to the others only); a message to everyone reaches both (onChat, sender included), a
//    private one reaches its target only; a second "alice" in room1 gets {"code":500,
//    "error":true}, and the same connection then enters room2 as eve, who hears nothing of
//    room1; carol, a raw-TCP client made of pomelo-protocol (node branch) on a net socket, goes
//    through gate and connector too and chats with the WebSocket users; dave does the same with
//    the pomelo-client tool in script mode (when its path is given); bob disconnects: onLeave to
//    the others.
// 4. The wire (spec 3, 4.3-4.5, 7, 9). Every browser user's WebSocket (the page's, made by the
//    client with `new WebSocket(url)`) goes through recording relays of this script, one for the
//    gate and one for the connector (the context's WebSocket rewrites the port), and so do
//    dave's connections: the gate's handshake answer is the real gate's byte for byte
//    ({"code":200,"sys":{"protos":{...},"useProto":true}}, 339 bytes, or {"code":200,"sys":
//    {"useProto":true}} to a client that sent the version 2zWPnSlRsRxjqgcU215Uxg==); the
//    connector's is the real one's (729 bytes to a fresh client: dict, routeToCode, codeToRoute,
//    dictVersion s2r1qfKDrbhWCkA6uf+PTA==, useDict, protos, useProto; without protos to a client
//    whose protoVersion matches); the page's queryEntry goes as a string route (the gate has no
//    dictionary), enter and send as the codes 2 and 1; onChat comes as a string-route push with a
//    protobuf body (decoded with pomelo-protobuf, and byte for byte what its encoder makes: the
//    browser build's for the browser users, the node build's for carol).
// 5. Cached protos (the client keeps them in localStorage['protos'] and sends their version):
//    frank's page already holds chatofpomelo's own protos (the real server's parsed form and
//    version), so both frontends answer him without protos and he decodes onChat with his copy;
//    grace's holds another app's set (onChat with other tags and types, onAdd protobuf too, a
//    protobuf chat.chatHandler.send), so the gate sends her the server's set, her cache is
//    replaced, and she reads and sends everything right. Both see every message of room1.
// 6. Text outside the BMP: "hi 😀" from alice (the browser sends CESU-8) reaches alice and the
//    other browser users intact (their onChat strings are CESU-8 on the wire: what their decoder
//    reads), carol (real UTF-8 on the wire) and dave (pomelo-client prints it); and carol's
//    "😀 from tcp" (UTF-8) reaches the browsers intact.
// 7. pomelo-chat exits with status 0 on SIGTERM (so a sanitizer report in an ASan build fails
//    the test).
// Everything runs on 127.0.0.1 and within 30 s.
//
// Environment: PEER_TESTS_REQUIRED=1 fails instead of skipping (exit 77) when node_modules is
// missing (here or in examples/chat/web). Exit status: 0 all passed, 1 a failure, 2 usage,
// 77 skipped.
'use strict';

const assert = require('assert');
const childProcess = require('child_process');
const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('util');
const vm = require('vm');

const SKIP = 77;
const OVERALL_LIMIT_MS = 30000;
const WAIT_MS = 3000;
const QUIET_MS = 300; // how long "nothing arrives" is watched
const WEB_DIR = path.join(__dirname, '..', '..', 'examples', 'chat', 'web');
const LIBRARIES = {
  'pomelo-protocol': 'node_modules/pomelo-protocol/lib/protocol.js',
  'pomelo-protobuf': 'node_modules/pomelo-protobuf/lib/client/protobuf.js',
  'pomelo-jsclient-websocket': 'node_modules/pomelo-jsclient-websocket/lib/pomelo-client.js',
};

function skipOrFail(how) {
  if (process.env.PEER_TESTS_REQUIRED === '1') {
    console.error('chat-demo: FAIL: ' + how);
    process.exit(1);
  }
  console.log('chat-demo: SKIP: ' + how);
  process.exit(SKIP);
}

for (const m of ['pomelo-protocol', 'ws']) {
  try {
    require.resolve(m);
  } catch (e) {
    skipOrFail('node_modules is missing in ' + __dirname + ': run npm ci in tests/peers');
  }
}
for (const file of Object.values(LIBRARIES)) {
  if (!fs.existsSync(path.join(WEB_DIR, file))) {
    skipOrFail(file + ' is missing in examples/chat/web: run npm ci there');
  }
}

const chatPath = process.argv[2];
const clientToolPath = process.argv[3];
if (!chatPath) {
  console.error('usage: node ' + path.basename(__filename) +
                ' PATH/TO/pomelo-chat [PATH/TO/pomelo-client]');
  process.exit(2);
}

process.noDeprecation = true; // pomelo-protocol's node branch calls the deprecated `new Buffer()`
const Protocol = require('pomelo-protocol'); // no `window` in this realm: the node branch
const WebSocket = require('ws');
const { Package, Message } = Protocol;

const say = console.log.bind(console);
const {
  sleep, startChat, startRelay, withTimeout, wireHandshake, wireMessages, realProtos, dictVersion,
  freshProtobuf, browserProtobuf, hex,
} = require('./ws-wire.js');
// Plain data of this realm (bodies parsed in a vm context have that context's prototypes).
const plain = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));

// ---------------------------------------------------------------------------------------------
// What the real chatofpomelo announces (spec 3, 4.4, 7.3)

const DICT = {
  'chat.chatHandler.send': 1,
  'connector.entryHandler.enter': 2,
  'gate.gateHandler.queryEntry': 3,
};
const DICT_VERSION = 's2r1qfKDrbhWCkA6uf+PTA==';
const PROTOS_VERSION = '2zWPnSlRsRxjqgcU215Uxg==';
// config/serverProtos.json (clientProtos.json is {}), and what the server makes of it.
const SERVER_PROTOS = {
  onChat: { 'required string msg': 1, 'required string from': 2, 'required string target': 3 },
};
const PROTOS = realProtos(SERVER_PROTOS, {});
assert.strictEqual(PROTOS.version, PROTOS_VERSION, 'the version of chatofpomelo\'s protos');
assert.strictEqual(dictVersion(DICT), DICT_VERSION, 'the version of its dictionary');
// Another app's protos, cached by grace's page: other tags and types for onChat, onAdd as
// protobuf, and a protobuf chat.chatHandler.send; if the client kept them, grace would read
// garbage and send bodies the server cannot read.
const STALE_PROTOS = realProtos(
  { onChat: { 'required uInt32 msg': 3, 'required string target': 1, 'optional string from': 7 },
    onAdd: { 'required string user': 1 } },
  { 'chat.chatHandler.send': { 'required string content': 1, 'optional string rid': 2 } });
assert.notStrictEqual(STALE_PROTOS.version, PROTOS_VERSION);
const CODE_TO_ROUTE = { 1: 'chat.chatHandler.send', 2: 'connector.entryHandler.enter',
                        3: 'gate.gateHandler.queryEntry' };
// The handshake answers, as the real servers write them (spec 4.3, 4.4).
const GATE_FRESH = JSON.stringify({ code: 200, sys: { protos: PROTOS, useProto: true } });
const GATE_CACHED = '{"code":200,"sys":{"useProto":true}}';
const CONNECTOR_DICT = { heartbeat: 3, dict: DICT, routeToCode: DICT, codeToRoute: CODE_TO_ROUTE,
                         dictVersion: DICT_VERSION, useDict: true };
const CONNECTOR_FRESH = JSON.stringify({ code: 200, sys: Object.assign({}, CONNECTOR_DICT,
                                                                       { protos: PROTOS,
                                                                         useProto: true }) });
const CONNECTOR_CACHED_PROTOS = JSON.stringify({ code: 200, sys: Object.assign(
  {}, CONNECTOR_DICT, { useProto: true }) });
assert.strictEqual(Buffer.byteLength(GATE_FRESH), 339, 'spec 4.4: the gate\'s 339 bytes');
assert.strictEqual(Buffer.byteLength(CONNECTOR_FRESH), 729, 'spec 4.4: the connector\'s 729');

const SMILE = '\u{1F600}'; // 😀
const SMILE_UTF8 = Buffer.from([0xf0, 0x9f, 0x98, 0x80]);
const SMILE_CESU8 = Buffer.from([0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]);
const holds = (buf, part) => Buffer.from(buf).indexOf(part) >= 0;

// The encoders that make onChat for each kind of client: the browser build (CESU-8 strings)
// for the browser users, the node build (UTF-8) for the others.
const pbBrowser = browserProtobuf();
pbBrowser.init({ encoderProtos: PROTOS.server, decoderProtos: PROTOS.server });
const pbNode = freshProtobuf();
pbNode.init({ encoderProtos: PROTOS.server, decoderProtos: PROTOS.server });

// Relays of this script, closed at the end.
const relays = [];
async function relayTo(host, port) {
  const r = await startRelay(host, port);
  relays.push(r);
  return r;
}

// ---------------------------------------------------------------------------------------------
// The page

// The scripts of index.html in order ({src} or {code}) and the other files it references.
function readPage() {
  const html = fs.readFileSync(path.join(WEB_DIR, 'index.html'), 'utf8')
    .replace(/<!--[\s\S]*?-->/g, '');
  const scripts = [];
  for (const m of html.matchAll(/<script(?:\s+src="([^"]*)")?\s*>([\s\S]*?)<\/script>/g)) {
    scripts.push(m[1] !== undefined ? { src: m[1] } : { code: m[2] });
  }
  const links = [...html.matchAll(/<link\b[^>]*\bhref="([^"]*)"/g)].map((m) => m[1]);
  return { scripts, links };
}

function checkPage(page) {
  const files = page.scripts.filter((s) => s.src).map((s) => s.src).concat(page.links);
  for (const f of files) {
    assert(!/^([a-z]+:|\/)/i.test(f), 'a relative path, served from examples/chat/web: ' + f);
    const full = path.resolve(WEB_DIR, f);
    assert(full.startsWith(WEB_DIR + path.sep), f + ' stays inside examples/chat/web');
    assert(fs.statSync(full).isFile(), f + ' exists');
  }
  for (const file of Object.values(LIBRARIES)) {
    assert(files.includes(file), 'index.html loads ' + file);
  }
  const order = Object.values(LIBRARIES).map((f) => files.indexOf(f));
  assert(order[0] < order[1] && order[1] < order[2], 'protocol, protobuf, then the client');
  assert(files.indexOf('app.js') > order[2], 'app.js after the client');
  const pkg = JSON.parse(fs.readFileSync(path.join(WEB_DIR, 'package.json'), 'utf8'));
  const lock = JSON.parse(fs.readFileSync(path.join(WEB_DIR, 'package-lock.json'), 'utf8'));
  const peers = JSON.parse(fs.readFileSync(path.join(__dirname, 'package.json'), 'utf8'));
  assert.strictEqual(pkg.private, true, 'the page package is private');
  assert.deepStrictEqual(Object.keys(pkg.dependencies).sort(), Object.keys(LIBRARIES).sort());
  const versions = [];
  for (const name of Object.keys(LIBRARIES)) {
    const v = pkg.dependencies[name];
    assert.match(v, /^\d+\.\d+\.\d+$/, name + ': an exact version');
    assert.strictEqual(v, peers.dependencies[name], name + ': the version of tests/peers');
    assert.strictEqual(lock.packages['node_modules/' + name].version, v, name + ' in the lock');
    const installed = JSON.parse(fs.readFileSync(
      path.join(WEB_DIR, 'node_modules', name, 'package.json'), 'utf8'));
    assert.strictEqual(installed.version, v, name + ': the installed version');
    versions.push(name + '@' + v);
  }
  return files.length + ' files referenced, all present; ' + versions.join(', ');
}

// One browser user: a vm context running the page's scripts. Returns {name, pomelo, chat,
// pushes, storage, wire}: chat is the page's window.chatClient; pushes records onAdd/onLeave/
// onChat; storage is the Map behind its localStorage (`stored`: what it holds when the page
// loads); the context's WebSocket connects to the gate and the connector through relays of their
// own, wire.gate and wire.connector (their `conns`, one per connection).
async function newBrowser(name, page, chatServer, stored = {}) {
  const storage = new Map(Object.entries(stored));
  const gateRelay = await relayTo(chatServer.host, chatServer.gatePort);
  const connectorRelay = await relayTo(chatServer.host, chatServer.connectorPort);
  const ports = { [chatServer.gatePort]: gateRelay.port,
                  [chatServer.connectorPort]: connectorRelay.port };
  class RelayedWebSocket extends WebSocket {
    constructor(url, ...rest) {
      const u = new URL(url);
      assert(ports[u.port], name + ': a WebSocket to the gate or the connector: ' + url);
      u.port = ports[u.port];
      super(u.href.replace(/\/$/, ''), ...rest);
    }
  }
  const sandbox = {
    console: {
      log: (...a) => note(name, a),
      error: (...a) => note(name, a),
      warn: (...a) => note(name, a),
    },
    setTimeout,
    clearTimeout,
    setInterval,
    clearInterval,
    WebSocket: RelayedWebSocket,
    localStorage: {
      getItem: (k) => (storage.has(k) ? storage.get(k) : null),
      setItem: (k, v) => storage.set(k, String(v)),
      removeItem: (k) => storage.delete(k),
    },
  };
  const ctx = vm.createContext(sandbox);
  vm.runInContext('var window = this;', ctx); // as in a browser, `window` is the global object
  for (const s of page.scripts) {
    const code = s.src ? fs.readFileSync(path.join(WEB_DIR, s.src), 'utf8') : s.code;
    vm.runInContext(code, ctx, { filename: s.src || 'index.html (inline script)' });
  }
  assert.strictEqual(typeof ctx.Protocol.Package.encode, 'function', 'window.Protocol');
  assert.strictEqual(typeof ctx.protobuf.encoder.encode, 'function', 'window.protobuf, whole');
  assert.strictEqual(ctx.module, undefined, 'the page removed its `module` stand-in');
  assert.strictEqual(typeof ctx.pomelo.request, 'function', 'window.pomelo');
  assert(ctx.pomelo instanceof ctx.EventEmitter, "the client is the page's EventEmitter");
  assert.strictEqual(typeof ctx.chatClient.login, 'function', 'window.chatClient (app.js)');
  const user = { name, pomelo: ctx.pomelo, chat: ctx.chatClient, pushes: [], storage,
                 browser: true, wire: { gate: gateRelay, connector: connectorRelay } };
  for (const route of ['onAdd', 'onLeave', 'onChat']) {
    ctx.pomelo.on(route, (body) => user.pushes.push({ route, body: plain(body) }));
  }
  return user;
}

// The client logs with console.log/error (on close, the whole close event): one short line.
function note(name, args) {
  const text = args.map((a) => {
    if (a && typeof a === 'object' && 'code' in a && 'wasClean' in a) {
      return 'CloseEvent{code: ' + a.code + '}';
    }
    return typeof a === 'string' ? a : util.inspect(a, { depth: 0, breakLength: Infinity });
  });
  say('# ' + name + ' (jsclient): ' + text.join(' ').slice(0, 160));
}

// ---------------------------------------------------------------------------------------------
// Pushes, for every kind of user ({pushes: [{route, body}]})

// Takes the oldest push on `route` not taken yet, waiting for it if need be.
async function take(user, route, ms = WAIT_MS) {
  const t0 = Date.now();
  for (;;) {
    const i = user.pushes.findIndex((p) => p.route === route);
    if (i >= 0) {
      const p = user.pushes.splice(i, 1)[0];
      user.lastTaken = p;
      return p.body;
    }
    if (Date.now() - t0 > ms) {
      throw new Error(user.name + ': no ' + route + ' in ' + ms + ' ms');
    }
    await sleep(10);
  }
}

// Nothing (not taken yet) arrives for `ms`.
async function nothing(users, ms = QUIET_MS) {
  await sleep(ms);
  for (const u of users) {
    assert.deepStrictEqual(u.pushes, [], u.name + ' got no push');
  }
}

// Every one of `users` gets the push; for onChat, its bytes on the wire are checked too.
async function allGet(users, route, expected) {
  for (const u of users) {
    assert.deepStrictEqual(await take(u, route), expected, u.name + ' gets ' + route + ' ' +
                           JSON.stringify(expected));
    if (route === 'onChat') {
      onChatOnWire(u, expected);
    }
  }
}

// The last onChat push on a user's connector connection: a string route, a protobuf body that
// pomelo-protobuf decodes to `expected`, byte for byte its encoder's output for that client (the
// browser build's, with CESU-8 strings, for a browser; the node build's, UTF-8, otherwise).
function onChatOnWire(user, expected) {
  let m = user.lastTaken.wire; // a TcpUser's: what its socket read
  if (user.browser) {
    const conns = user.wire.connector.conns;
    const pushes = wireMessages(conns[conns.length - 1], 's2c').filter((x) => x.type === 3);
    m = pushes[pushes.length - 1];
  }
  assert(m, user.name + ': a push on the wire');
  assert.strictEqual(m.compressRoute, 0, 'onChat is not in the dictionary: a string route');
  assert.strictEqual(m.route, 'onChat');
  const pb = user.browser ? pbBrowser : pbNode;
  assert.deepStrictEqual(plain(pb.decode('onChat', m.body)), expected,
                         user.name + ': the protobuf body, decoded by pomelo-protobuf');
  assert.strictEqual(hex(m.body), hex(pb.encode('onChat', expected)),
                     user.name + ': the body pomelo-protobuf\'s encoder makes');
  return m;
}

// The DATA messages a browser user sent to the connector on its last connection.
function sentToConnector(user) {
  const conns = user.wire.connector.conns;
  return wireMessages(conns[conns.length - 1], 'c2s');
}

// The handshake request and answer of a browser user's last connection to `which`.
function handshakeOf(user, which) {
  const conns = user.wire[which].conns;
  const conn = conns[conns.length - 1];
  return { up: wireHandshake(conn, 'c2s').json, down: wireHandshake(conn).text };
}

// The request enter (code 2) and send (code 1) on the wire, with JSON bodies.
function checkCompressed(msgs, code, body) {
  const m = msgs.filter((x) => x.type === 0 && x.route === code && x.compressRoute === 1);
  assert(m.length, 'a request with the route code ' + code + ' (' + CODE_TO_ROUTE[code] +
         '): ' + JSON.stringify(msgs.map((x) => [x.type, x.compressRoute, x.route])));
  if (body !== undefined) {
    assert.deepStrictEqual(JSON.parse(m[m.length - 1].body.toString('utf8')), body);
  }
  return m[m.length - 1];
}

// ---------------------------------------------------------------------------------------------
// A raw-TCP Pomelo client made of pomelo-protocol (node branch) and a net socket

// Bodies of routes in the handshake's server protos are protobuf (pomelo-protobuf's node build,
// an instance per user); the others JSON. Each push keeps its message as read (`wire`: route,
// compressRoute, body bytes); `handshake` is the text of the last handshake answer.
class TcpUser {
  constructor(name) {
    this.name = name;
    this.pushes = [];
    this.pending = new Map();
    this.reqId = 0;
    this.sock = null;
    this.timer = null;
    this.protobuf = freshProtobuf();
    this.serverProtos = {};
    this.handshake = null;
  }

  decodeBody(route, body) {
    if (route && this.serverProtos[route]) {
      return plain(this.protobuf.decode(route, Buffer.from(body)));
    }
    return JSON.parse(Protocol.strdecode(body));
  }

  // Connects, handshakes, acknowledges; heartbeats at the server's interval afterwards.
  connect(host, port) {
    return withTimeout(new Promise((resolve, reject) => {
      let buf = Buffer.alloc(0);
      const sock = net.connect(port, host);
      this.sock = sock;
      sock.on('error', reject);
      sock.on('connect', () => {
        const hs = { sys: { type: 'node-tcp', version: '0.0.1' }, user: {} };
        sock.write(Package.encode(Package.TYPE_HANDSHAKE,
                                  Protocol.strencode(JSON.stringify(hs))));
      });
      sock.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 4 && buf.length >= 4 + buf.readUIntBE(1, 3)) {
          const n = 4 + buf.readUIntBE(1, 3);
          const pkg = Package.decode(buf.subarray(0, n));
          buf = buf.subarray(n);
          if (pkg.type === Package.TYPE_HANDSHAKE) {
            this.handshake = Protocol.strdecode(pkg.body);
            const answer = JSON.parse(this.handshake);
            if (answer.code !== 200) {
              reject(new Error('handshake answer ' + JSON.stringify(answer)));
              return;
            }
            const protos = answer.sys && answer.sys.protos;
            if (protos) {
              this.serverProtos = protos.server || {};
              this.protobuf.init({ encoderProtos: protos.client || {},
                                   decoderProtos: this.serverProtos });
            }
            sock.write(Package.encode(Package.TYPE_HANDSHAKE_ACK));
            const hb = answer.sys && answer.sys.heartbeat;
            if (hb) {
              this.timer = setInterval(() => {
                sock.write(Package.encode(Package.TYPE_HEARTBEAT));
              }, hb * 1000);
            }
            resolve(answer);
          } else if (pkg.type === Package.TYPE_DATA) {
            const m = Message.decode(pkg.body);
            if (m.type === Message.TYPE_RESPONSE && this.pending.has(m.id)) {
              const { route, resolve: done } = this.pending.get(m.id);
              this.pending.delete(m.id);
              done(this.decodeBody(route, m.body));
            } else if (m.type === Message.TYPE_PUSH) {
              assert.strictEqual(m.compressRoute, 0, 'push routes are strings');
              const wire = { route: m.route, compressRoute: m.compressRoute,
                             body: Buffer.from(m.body) };
              this.pushes.push({ route: m.route, body: this.decodeBody(m.route, m.body), wire });
            }
          }
        }
      });
    }), this.name + ' handshake');
  }

  request(route, body) {
    const id = ++this.reqId;
    const msg = Message.encode(id, Message.TYPE_REQUEST, 0, route,
                               Protocol.strencode(JSON.stringify(body)));
    this.sock.write(Package.encode(Package.TYPE_DATA, msg));
    return withTimeout(new Promise((resolve) => this.pending.set(id, { route, resolve })),
                       this.name + ': answer to ' + route);
  }

  close() {
    clearInterval(this.timer);
    if (this.sock) {
      this.sock.end();
      this.sock = null;
    }
  }
}

// The pomelo-client tool in script mode, fed one line at a time: line(text) writes a script
// line, next() resolves with the next line it prints.
function startClientTool(toolPath) {
  const child = childProcess.spawn(toolPath, ['--timeout', '5', 'script'],
                                   { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = [];
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
    let i;
    while ((i = out.indexOf('\n')) >= 0) {
      lines.push(out.slice(0, i));
      out = out.slice(i + 1);
    }
  });
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve(sig || code)));
  process.on('exit', () => child.kill('SIGKILL'));
  say('# pomelo-client (dave): pid ' + child.pid);
  return {
    pid: child.pid,
    line: (text) => child.stdin.write(text + '\n'),
    next: async () => {
      const t0 = Date.now();
      while (lines.length === 0) {
        if (Date.now() - t0 > WAIT_MS + 5000) {
          throw new Error('pomelo-client printed nothing; stderr: ' + err);
        }
        await sleep(10);
      }
      return JSON.parse(lines.shift());
    },
    end: () => {
      child.stdin.end();
      return withTimeout(exited, 'pomelo-client exit', 8000);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The scenario: steps run in order; the first failure ends it (the later ones depend on it).

async function main() {
  const limit = setTimeout(() => {
    process.stderr.write('chat-demo: FAIL: took more than ' + OVERALL_LIMIT_MS / 1000 + ' s\n');
    process.exit(1);
  }, OVERALL_LIMIT_MS);
  const t0 = Date.now();
  const page = readPage();
  const chat = await startChat(chatPath);
  const host = chat.host;
  const gate = { host, port: chat.gatePort };
  say('# pomelo-chat (pid ' + chat.pid + '): gate on ' + host + ':' + gate.port +
      ', connector on ' + host + ':' + chat.connectorPort);
  const users = []; // everyone whose pushes are watched
  const room1 = []; // the users of room1 but dave
  let alice;
  let bob;
  let eve;
  let carol;
  let dave;
  let daveGate;
  let daveConnector;
  const loginBrowser = async (name, stored) => {
    const u = await newBrowser(name, page, chat, stored);
    users.push(u);
    const list = plain(await u.chat.login(gate, name, 'room1'));
    room1.push(u);
    return { u, list };
  };

  const steps = [
    ['the page: files, references and pinned versions', () => checkPage(page)],
    ['gate.gateHandler.queryEntry over WebSocket; the gate\'s handshake is the real one',
     async () => {
       const probe = await newBrowser('probe', page, chat);
       await probe.chat.connect(gate.host, gate.port);
       const r1 = plain(await probe.chat.request('gate.gateHandler.queryEntry', { uid: 'alice' }));
       assert.deepStrictEqual(r1, { code: 200, host, port: chat.connectorPort });
       const r2 = plain(await probe.chat.request('gate.gateHandler.queryEntry', {}));
       assert.deepStrictEqual(r2, { code: 500 }, 'no uid');
       await probe.chat.disconnect();
       const conn = probe.wire.gate.conns[0];
       assert.strictEqual(wireHandshake(conn, 'c2s').json.sys.protoVersion, 0, 'a fresh page');
       assert.strictEqual(wireHandshake(conn).text, GATE_FRESH,
                          'the gate\'s answer: its protos, no dictionary, no heartbeat');
       assert.strictEqual(probe.storage.get('protos'), JSON.stringify(PROTOS),
                          'the client cached the protos');
       const [q] = wireMessages(conn, 'c2s');
       assert.strictEqual(q.compressRoute, 0, 'no dictionary at the gate: a string route');
       assert.strictEqual(q.route, 'gate.gateHandler.queryEntry');
       assert.strictEqual(q.body.toString(), '{"uid":"alice"}');
       return JSON.stringify(r1) + '; without uid ' + JSON.stringify(r2) + '; handshake ' +
         Buffer.byteLength(GATE_FRESH) + ' bytes as the real gate\'s';
     }],
    ['alice enters room1 through gate and connector (WebSocket, the page\'s login)', async () => {
      const { u, list } = await loginBrowser('alice');
      alice = u;
      assert.deepStrictEqual(list, ['alice']);
      const g = handshakeOf(alice, 'gate');
      assert.strictEqual(g.down, GATE_FRESH);
      const c = handshakeOf(alice, 'connector');
      assert.strictEqual(c.up.sys.protoVersion, PROTOS_VERSION,
                         'the client sends the version the gate gave it');
      assert.strictEqual(c.up.sys.dictVersion, undefined, 'the JS client never sends one');
      assert.strictEqual(c.down, CONNECTOR_CACHED_PROTOS,
                         'the connector\'s answer: the dictionary, no protos (version matched)');
      checkCompressed(sentToConnector(alice), 2, { username: 'alice', rid: 'room1' });
      return 'users ' + JSON.stringify(list) + '; connector handshake: dict ' + DICT_VERSION +
        ', protos omitted; enter sent as code 2';
    }],
    ['bob enters room1: users list, onAdd to alice only', async () => {
      const r = await loginBrowser('bob');
      bob = r.u;
      assert.deepStrictEqual(r.list.slice().sort(), ['alice', 'bob']);
      assert.deepStrictEqual(await take(alice, 'onAdd'), { route: 'onAdd', user: 'bob' });
      await nothing(users);
      return 'users ' + JSON.stringify(r.list) + '; alice got onAdd bob';
    }],
    ['frank (chatofpomelo\'s protos cached) and grace (another app\'s cached) enter room1',
     async () => {
       const f = await loginBrowser('frank', { protos: JSON.stringify(PROTOS) });
       const frank = f.u;
       assert.deepStrictEqual(f.list.slice().sort(), ['alice', 'bob', 'frank']);
       let g = handshakeOf(frank, 'gate');
       assert.strictEqual(g.up.sys.protoVersion, PROTOS_VERSION, 'frank sends his version');
       assert.strictEqual(g.down, GATE_CACHED, 'the gate omits the protos for frank');
       let c = handshakeOf(frank, 'connector');
       assert.strictEqual(c.down, CONNECTOR_CACHED_PROTOS, 'so does the connector');
       assert.strictEqual(frank.storage.get('protos'), JSON.stringify(PROTOS), 'his cache kept');
       const gr = await loginBrowser('grace', { protos: JSON.stringify(STALE_PROTOS) });
       const grace = gr.u;
       assert.deepStrictEqual(gr.list.slice().sort(), ['alice', 'bob', 'frank', 'grace']);
       g = handshakeOf(grace, 'gate');
       assert.strictEqual(g.up.sys.protoVersion, STALE_PROTOS.version, 'grace sends hers');
       assert.strictEqual(g.down, GATE_FRESH, 'the gate sends grace the server\'s protos');
       c = handshakeOf(grace, 'connector');
       assert.strictEqual(c.up.sys.protoVersion, PROTOS_VERSION, 'then she has the right ones');
       assert.strictEqual(c.down, CONNECTOR_CACHED_PROTOS);
       assert.strictEqual(grace.storage.get('protos'), JSON.stringify(PROTOS), 'cache replaced');
       checkCompressed(sentToConnector(grace), 2, { username: 'grace', rid: 'room1' });
       for (const u of [alice, bob]) {
         assert.deepStrictEqual(await take(u, 'onAdd'), { route: 'onAdd', user: 'frank' });
       }
       for (const u of [alice, bob, frank]) {
         assert.deepStrictEqual(await take(u, 'onAdd'), { route: 'onAdd', user: 'grace' });
       }
       await nothing(users);
       return 'frank: both frontends answered without protos; grace (cached ' +
         STALE_PROTOS.version + '): the gate sent ' + PROTOS_VERSION + ', her cache replaced';
     }],
    ['alice says hello to everyone: all of room1 get onChat, protobuf on the wire', async () => {
      const answer = plain(await alice.chat.send('room1', 'alice', '*', 'hello room'));
      assert.deepStrictEqual(answer, {}, 'the answer to send is {}');
      const sent = checkCompressed(sentToConnector(alice), 1,
                                   { rid: 'room1', content: 'hello room', from: 'alice',
                                     target: '*' });
      const expected = { msg: 'hello room', from: 'alice', target: '*' };
      await allGet(room1, 'onChat', expected); // the sender too
      await nothing(users);
      const m = onChatOnWire(alice, expected);
      return JSON.stringify(expected) + ' to ' + room1.length + ' users; send as code ' +
        sent.route + ', onChat body ' + hex(m.body);
    }],
    ['bob whispers to alice and to grace: only each target gets it', async () => {
      const grace = room1.find((u) => u.name === 'grace');
      assert.deepStrictEqual(plain(await bob.chat.send('room1', 'bob', 'alice', 'psst')), {});
      const expected = { msg: 'psst', from: 'bob', target: 'alice' };
      await allGet([alice], 'onChat', expected);
      await nothing(users);
      assert.deepStrictEqual(plain(await bob.chat.send('room1', 'bob', 'grace', 'hi grace')),
                             {});
      await allGet([grace], 'onChat', { msg: 'hi grace', from: 'bob', target: 'grace' });
      await nothing(users);
      const nobody = plain(await bob.chat.send('room1', 'bob', 'nobody', 'hello?'));
      assert.deepStrictEqual(nobody, { code: 500 }, 'to someone not in the room');
      assert.deepStrictEqual(plain(await grace.chat.send('room1', 'grace', '*', 'from grace')),
                             {});
      checkCompressed(sentToConnector(grace), 1, { rid: 'room1', content: 'from grace',
                                                   from: 'grace', target: '*' });
      await allGet(room1, 'onChat', { msg: 'from grace', from: 'grace', target: '*' });
      await nothing(users);
      return JSON.stringify(expected) + '; to nobody: ' + JSON.stringify(nobody) +
        '; grace sends JSON (her stale protobuf proto for send is gone)';
    }],
    ['a second alice in room1 is refused; that connection enters room2 as eve', async () => {
      eve = await newBrowser('eve', page, chat);
      await eve.chat.connect(host, chat.connectorPort);
      const enter = (username, rid) =>
        eve.chat.request('connector.entryHandler.enter', { username, rid }).then(plain);
      const dup = await enter('alice', 'room1');
      assert.deepStrictEqual(dup, { code: 500, error: true });
      const list = await enter('eve', 'room2');
      assert.deepStrictEqual(list, { users: ['eve'] });
      users.push(eve);
      const c = handshakeOf(eve, 'connector');
      assert.strictEqual(c.up.sys.protoVersion, 0, 'a fresh page, straight to the connector');
      assert.strictEqual(c.down, CONNECTOR_FRESH, 'the connector\'s whole answer (729 bytes)');
      await nothing(users);
      return 'duplicate: ' + JSON.stringify(dup) + '; room2: ' + JSON.stringify(list) +
        '; her connector handshake: the real 729 bytes';
    }],
    ['carol (raw TCP, pomelo-protocol) enters room1 and chats with the WebSocket users',
     async () => {
       carol = new TcpUser('carol');
       const gateHs = await carol.connect(gate.host, gate.port);
       assert.strictEqual(gateHs.sys.heartbeat, undefined, 'the gate does not heartbeat');
       assert.strictEqual(carol.handshake, GATE_FRESH, 'the gate\'s answer over raw TCP');
       const entry = await carol.request('gate.gateHandler.queryEntry', { uid: 'carol' });
       assert.deepStrictEqual(entry, { code: 200, host, port: chat.connectorPort });
       carol.close();
       carol = new TcpUser('carol');
       const hs = await carol.connect(entry.host, entry.port);
       assert.strictEqual(hs.sys.heartbeat, 3, 'the connector heartbeats every 3 s');
       assert.strictEqual(carol.handshake, CONNECTOR_FRESH, 'the connector\'s whole answer');
       const r = await carol.request('connector.entryHandler.enter',
                                     { username: 'carol', rid: 'room1' });
       assert.deepStrictEqual(r.users.slice().sort(),
                              ['alice', 'bob', 'carol', 'frank', 'grace']);
       users.push(carol);
       for (const u of room1) {
         assert.deepStrictEqual(await take(u, 'onAdd'), { route: 'onAdd', user: 'carol' });
       }
       room1.push(carol);
       await alice.chat.send('room1', 'alice', '*', 'hi carol');
       await allGet(room1, 'onChat', { msg: 'hi carol', from: 'alice', target: '*' });
       const whisper = await carol.request('chat.chatHandler.send',
                                           { rid: 'room1', content: 'from tcp', from: 'carol',
                                             target: 'bob' });
       assert.deepStrictEqual(whisper, {});
       await allGet([bob], 'onChat', { msg: 'from tcp', from: 'carol', target: 'bob' });
       await nothing(users);
       return 'gate ' + JSON.stringify(entry) + '; users ' + JSON.stringify(r.users) +
         '; onChat both ways (protobuf, decoded by pomelo-protobuf); eve (room2) heard nothing';
     }],
    ['dave (raw TCP, the pomelo-client tool in script mode) through gate and connector',
     async () => {
       if (!clientToolPath) {
         return 'skipped: no pomelo-client path given';
       }
       daveGate = await relayTo(host, gate.port);
       daveConnector = await relayTo(host, chat.connectorPort);
       dave = startClientTool(clientToolPath);
       dave.line('connect ' + host + ' ' + daveGate.port);
       dave.line('request gate.gateHandler.queryEntry {"uid":"dave"}');
       const entry = await dave.next();
       assert.deepStrictEqual(entry, { code: 200, host, port: chat.connectorPort });
       // The same client object: it keeps the protos the gate gave it.
       dave.line('connect ' + entry.host + ' ' + daveConnector.port);
       dave.line('request connector.entryHandler.enter {"username":"dave","rid":"room1"}');
       const r = await dave.next();
       assert.deepStrictEqual(r.users.slice().sort(),
                              ['alice', 'bob', 'carol', 'dave', 'frank', 'grace']);
       for (const u of room1) {
         assert.deepStrictEqual(await take(u, 'onAdd'), { route: 'onAdd', user: 'dave' });
       }
       const g = daveGate.conns[0];
       const gUp = wireHandshake(g, 'c2s').json;
       assert.strictEqual(gUp.sys.protoVersion || 0, 0, 'dave\'s first handshake: no protos');
       assert.strictEqual(gUp.sys.dictVersion, undefined, 'nor a dictionary');
       assert.strictEqual(wireHandshake(g).text, GATE_FRESH);
       const c = daveConnector.conns[0];
       const cUp = wireHandshake(c, 'c2s').json;
       assert.strictEqual(cUp.sys.protoVersion, PROTOS_VERSION,
                          'dave\'s second handshake sends the cached protos\' version');
       assert.strictEqual(cUp.sys.dictVersion, undefined, 'and no dictionary (none cached)');
       assert.strictEqual(wireHandshake(c).text, CONNECTOR_CACHED_PROTOS,
                          'the connector omits the protos for dave');
       const gateReq = wireMessages(g, 'c2s')[0];
       assert.strictEqual(gateReq.compressRoute, 0, 'no dictionary at the gate: a string');
       checkCompressed(wireMessages(c, 'c2s'), 2, { username: 'dave', rid: 'room1' });
       await bob.chat.send('room1', 'bob', '*', 'hi dave');
       dave.line('wait onChat 5');
       const hi = { msg: 'hi dave', from: 'bob', target: '*' };
       assert.deepStrictEqual(await dave.next(), { route: 'onChat', body: hi });
       await allGet(room1, 'onChat', hi);
       dave.line('request chat.chatHandler.send {"rid":"room1","content":"dave here",' +
                 '"from":"dave","target":"*"}');
       assert.deepStrictEqual(await dave.next(), {}, 'dave\'s send answered {}');
       checkCompressed(wireMessages(c, 'c2s'), 1, { rid: 'room1', content: 'dave here',
                                                    from: 'dave', target: '*' });
       const mine = { msg: 'dave here', from: 'dave', target: '*' };
       dave.line('wait onChat 5');
       assert.deepStrictEqual(await dave.next(), { route: 'onChat', body: mine });
       await allGet(room1, 'onChat', mine);
       const pushes = wireMessages(c, 's2c').filter((m) => m.type === 3 && m.route === 'onChat');
       assert.strictEqual(hex(pushes[pushes.length - 1].body), hex(pbNode.encode('onChat', mine)),
                          'dave\'s onChat: protobuf, UTF-8');
       await nothing(users);
       return 'users ' + JSON.stringify(r.users) + '; second handshake with protoVersion ' +
         PROTOS_VERSION + ', answered without protos; enter and send as codes 2 and 1; onChat ' +
         'read from protobuf';
     }],
    ['"hi ' + SMILE + '" from alice reaches every user intact; carol\'s ' + SMILE + ' too',
     async () => {
       const text = 'hi ' + SMILE;
       assert.deepStrictEqual(plain(await alice.chat.send('room1', 'alice', '*', text)), {});
       const sent = sentToConnector(alice).filter((m) => m.type === 0 && m.route === 1);
       assert(holds(sent[sent.length - 1].body, SMILE_CESU8),
              'the browser sent CESU-8: ' + hex(sent[sent.length - 1].body));
       const expected = { msg: text, from: 'alice', target: '*' };
       await allGet(room1, 'onChat', expected); // bytes checked: CESU-8 to browsers, UTF-8 else
       for (const u of room1) {
         const m = onChatOnWire(u, expected);
         assert(holds(m.body, u.browser ? SMILE_CESU8 : SMILE_UTF8),
                u.name + ': ' + (u.browser ? 'CESU-8' : 'UTF-8') + ' on the wire');
       }
       let got = '';
       if (dave) {
         dave.line('wait onChat 5');
         assert.deepStrictEqual(await dave.next(), { route: 'onChat', body: expected },
                                'dave prints it intact');
         const c = daveConnector.conns[0];
         const pushes = wireMessages(c, 's2c').filter((m) => m.type === 3);
         assert(holds(pushes[pushes.length - 1].body, SMILE_UTF8), 'dave\'s: UTF-8');
         got = ', dave';
       }
       const back = SMILE + ' from tcp';
       assert.deepStrictEqual(await carol.request('chat.chatHandler.send',
                                                  { rid: 'room1', content: back, from: 'carol',
                                                    target: '*' }), {});
       const fromCarol = { msg: back, from: 'carol', target: '*' };
       await allGet(room1, 'onChat', fromCarol);
       if (dave) {
         dave.line('wait onChat 5');
         assert.deepStrictEqual(await dave.next(), { route: 'onChat', body: fromCarol });
       }
       await nothing(users);
       return JSON.stringify(text) + ' to ' + room1.map((u) => u.name).join(', ') + got +
         ' (browsers ' + hex(SMILE_CESU8) + ', others ' + hex(SMILE_UTF8) + '); carol\'s back';
     }],
    ['dave leaves: the others get onLeave', async () => {
      if (!dave) {
        return 'skipped: no pomelo-client path given';
      }
      const status = await dave.end();
      dave = null;
      assert.strictEqual(status, 0, 'pomelo-client exit status');
      for (const u of room1) {
        assert.deepStrictEqual(await take(u, 'onLeave'), { route: 'onLeave', user: 'dave' });
      }
      await nothing(users);
      return 'pomelo-client exited with status 0; onLeave dave to ' + room1.length + ' users';
    }],
    ['bob disconnects: the others get onLeave', async () => {
      await bob.chat.disconnect();
      users.splice(users.indexOf(bob), 1);
      room1.splice(room1.indexOf(bob), 1);
      for (const u of room1) {
        assert.deepStrictEqual(await take(u, 'onLeave'), { route: 'onLeave', user: 'bob' });
      }
      await alice.chat.send('room1', 'alice', '*', 'still here');
      await allGet(room1, 'onChat', { msg: 'still here', from: 'alice', target: '*' });
      await nothing(users.concat([bob]));
      return 'onLeave {"route":"onLeave","user":"bob"}; the room goes on without him';
    }],
  ];

  let failed = 0;
  let n = 0;
  say('1..' + (steps.length + 1));
  for (const [name, fn] of steps) {
    n++;
    const t = Date.now();
    try {
      const result = await fn();
      say('ok ' + n + ' - ' + name + ': ' + result + ' (' + (Date.now() - t) + ' ms)');
    } catch (e) {
      failed++;
      say('not ok ' + n + ' - ' + name);
      say(String(e.stack || e).replace(/^/gm, '# '));
      break;
    }
  }
  for (const u of users) {
    if (u.browser) {
      await u.chat.disconnect();
    }
  }
  if (carol) {
    carol.close();
  }
  if (dave) {
    await dave.end().catch(() => {});
  }
  await sleep(100);
  for (const r of relays) {
    r.close();
  }
  const exit = await chat.stop();
  n = steps.length + 1;
  if (exit === 0) {
    say('ok ' + n + ' - pomelo-chat exits with status 0 on SIGTERM');
  } else {
    failed++;
    say('not ok ' + n + ' - pomelo-chat exits with status 0 on SIGTERM: ' + exit);
  }
  if (failed) {
    say(chat.stderr().slice(-4000).replace(/^/gm, '# pomelo-chat: '));
  }
  say('# ' + ((Date.now() - t0) / 1000).toFixed(1) + ' s in all');
  say('chat-demo: ' + (n - failed) + ' passed, ' + failed + ' failed' +
      (failed && n > 1 ? ' (the steps after a failure are not run)' : ''));
  clearTimeout(limit);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write('chat-demo: FAIL: ' + (e.stack || e) + '\n');
  process.exit(1);
});
