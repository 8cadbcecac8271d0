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
// 4. pomelo-chat exits with status 0 on SIGTERM (so a sanitizer report in an ASan build fails
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
const { sleep, startChat, withTimeout } = require('./ws-wire.js');
// Plain data of this realm (bodies parsed in a vm context have that context's prototypes).
const plain = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));

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
// pushes}: chat is the page's window.chatClient; pushes records onAdd/onLeave/onChat.
function newBrowser(name, page) {
  const storage = new Map();
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
    WebSocket,
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
  const user = { name, pomelo: ctx.pomelo, chat: ctx.chatClient, pushes: [] };
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
      return user.pushes.splice(i, 1)[0].body;
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

// ---------------------------------------------------------------------------------------------
// A raw-TCP Pomelo client made of pomelo-protocol (node branch) and a net socket

class TcpUser {
  constructor(name) {
    this.name = name;
    this.pushes = [];
    this.pending = new Map();
    this.reqId = 0;
    this.sock = null;
    this.timer = null;
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
            const answer = JSON.parse(Protocol.strdecode(pkg.body));
            if (answer.code !== 200) {
              reject(new Error('handshake answer ' + JSON.stringify(answer)));
              return;
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
            const body = JSON.parse(Protocol.strdecode(m.body));
            if (m.type === Message.TYPE_RESPONSE && this.pending.has(m.id)) {
              this.pending.get(m.id)(body);
              this.pending.delete(m.id);
            } else if (m.type === Message.TYPE_PUSH) {
              assert.strictEqual(m.compressRoute, 0, 'push routes are strings');
              this.pushes.push({ route: m.route, body });
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
    return withTimeout(new Promise((resolve) => this.pending.set(id, resolve)),
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
  return {
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
  say('# pomelo-chat: gate on ' + host + ':' + gate.port + ', connector on ' + host + ':' +
      chat.connectorPort);
  const users = [];
  let alice;
  let bob;
  let eve;
  let carol;

  const steps = [
    ['the page: files, references and pinned versions', () => checkPage(page)],
    ['gate.gateHandler.queryEntry over WebSocket', async () => {
      const probe = newBrowser('probe', page);
      await probe.chat.connect(gate.host, gate.port);
      const r1 = plain(await probe.chat.request('gate.gateHandler.queryEntry', { uid: 'alice' }));
      assert.deepStrictEqual(r1, { code: 200, host, port: chat.connectorPort });
      const r2 = plain(await probe.chat.request('gate.gateHandler.queryEntry', {}));
      assert.deepStrictEqual(r2, { code: 500 }, 'no uid');
      await probe.chat.disconnect();
      return JSON.stringify(r1) + '; without uid ' + JSON.stringify(r2);
    }],
    ['alice enters room1 through gate and connector (WebSocket, the page\'s login)', async () => {
      alice = newBrowser('alice', page);
      users.push(alice);
      const list = await alice.chat.login(gate, 'alice', 'room1');
      assert.deepStrictEqual(plain(list), ['alice']);
      return 'users ' + JSON.stringify(list);
    }],
    ['bob enters room1: users list, onAdd to alice only', async () => {
      bob = newBrowser('bob', page);
      users.push(bob);
      const list = plain(await bob.chat.login(gate, 'bob', 'room1'));
      assert.deepStrictEqual(list.slice().sort(), ['alice', 'bob']);
      assert.deepStrictEqual(await take(alice, 'onAdd'), { route: 'onAdd', user: 'bob' });
      await nothing(users);
      return 'users ' + JSON.stringify(list) + '; alice got onAdd bob';
    }],
    ['alice says hello to everyone: both get onChat', async () => {
      const answer = plain(await alice.chat.send('room1', 'alice', '*', 'hello room'));
      assert.deepStrictEqual(answer, {}, 'the answer to send is {}');
      const expected = { msg: 'hello room', from: 'alice', target: '*' };
      assert.deepStrictEqual(await take(alice, 'onChat'), expected, 'the sender too');
      assert.deepStrictEqual(await take(bob, 'onChat'), expected);
      await nothing(users);
      return JSON.stringify(expected);
    }],
    ['bob whispers to alice: only alice gets it', async () => {
      const answer = plain(await bob.chat.send('room1', 'bob', 'alice', 'psst'));
      assert.deepStrictEqual(answer, {});
      const expected = { msg: 'psst', from: 'bob', target: 'alice' };
      assert.deepStrictEqual(await take(alice, 'onChat'), expected);
      await nothing(users);
      const nobody = plain(await bob.chat.send('room1', 'bob', 'nobody', 'hello?'));
      assert.deepStrictEqual(nobody, { code: 500 }, 'to someone not in the room');
      return JSON.stringify(expected) + '; to nobody: ' + JSON.stringify(nobody);
    }],
    ['a second alice in room1 is refused; that connection enters room2 as eve', async () => {
      eve = newBrowser('eve', page);
      await eve.chat.connect(host, chat.connectorPort);
      const enter = (username, rid) =>
        eve.chat.request('connector.entryHandler.enter', { username, rid }).then(plain);
      const dup = await enter('alice', 'room1');
      assert.deepStrictEqual(dup, { code: 500, error: true });
      const list = await enter('eve', 'room2');
      assert.deepStrictEqual(list, { users: ['eve'] });
      users.push(eve);
      await nothing(users);
      return 'duplicate: ' + JSON.stringify(dup) + '; room2: ' + JSON.stringify(list);
    }],
    ['carol (raw TCP, pomelo-protocol) enters room1 and chats with the WebSocket users',
     async () => {
       carol = new TcpUser('carol');
       const gateHs = await carol.connect(gate.host, gate.port);
       assert.strictEqual(gateHs.sys.heartbeat, undefined, 'the gate does not heartbeat');
       const entry = await carol.request('gate.gateHandler.queryEntry', { uid: 'carol' });
       assert.deepStrictEqual(entry, { code: 200, host, port: chat.connectorPort });
       carol.close();
       carol = new TcpUser('carol');
       const hs = await carol.connect(entry.host, entry.port);
       assert.strictEqual(hs.sys.heartbeat, 3, 'the connector heartbeats every 3 s');
       const r = await carol.request('connector.entryHandler.enter',
                                     { username: 'carol', rid: 'room1' });
       assert.deepStrictEqual(r.users.slice().sort(), ['alice', 'bob', 'carol']);
       users.push(carol);
       for (const u of [alice, bob]) {
         assert.deepStrictEqual(await take(u, 'onAdd'), { route: 'onAdd', user: 'carol' });
       }
       await alice.chat.send('room1', 'alice', '*', 'hi carol');
       const hi = { msg: 'hi carol', from: 'alice', target: '*' };
       for (const u of [alice, bob, carol]) {
         assert.deepStrictEqual(await take(u, 'onChat'), hi, u.name + ' gets alice\'s message');
       }
       const whisper = await carol.request('chat.chatHandler.send',
                                           { rid: 'room1', content: 'from tcp', from: 'carol',
                                             target: 'bob' });
       assert.deepStrictEqual(whisper, {});
       assert.deepStrictEqual(await take(bob, 'onChat'),
                              { msg: 'from tcp', from: 'carol', target: 'bob' });
       await nothing(users);
       return 'gate ' + JSON.stringify(entry) + '; users ' + JSON.stringify(r.users) +
         '; onChat both ways; eve (room2) heard nothing';
     }],
    ['dave (raw TCP, the pomelo-client tool in script mode) through gate and connector',
     async () => {
       if (!clientToolPath) {
         return 'skipped: no pomelo-client path given';
       }
       const dave = startClientTool(clientToolPath);
       dave.line('connect ' + host + ' ' + gate.port);
       dave.line('request gate.gateHandler.queryEntry {"uid":"dave"}');
       const entry = await dave.next();
       assert.deepStrictEqual(entry, { code: 200, host, port: chat.connectorPort });
       dave.line('connect ' + entry.host + ' ' + entry.port);
       dave.line('request connector.entryHandler.enter {"username":"dave","rid":"room1"}');
       const r = await dave.next();
       assert.deepStrictEqual(r.users.slice().sort(), ['alice', 'bob', 'carol', 'dave']);
       for (const u of [alice, bob, carol]) {
         assert.deepStrictEqual(await take(u, 'onAdd'), { route: 'onAdd', user: 'dave' });
       }
       await bob.chat.send('room1', 'bob', '*', 'hi dave');
       dave.line('wait onChat 5');
       const hi = { msg: 'hi dave', from: 'bob', target: '*' };
       assert.deepStrictEqual(await dave.next(), { route: 'onChat', body: hi });
       for (const u of [alice, bob, carol]) {
         assert.deepStrictEqual(await take(u, 'onChat'), hi);
       }
       const status = await dave.end();
       assert.strictEqual(status, 0, 'pomelo-client exit status');
       for (const u of [alice, bob, carol]) {
         assert.deepStrictEqual(await take(u, 'onLeave'), { route: 'onLeave', user: 'dave' });
       }
       await nothing(users);
       return 'users ' + JSON.stringify(r.users) + '; onChat received; onLeave when it ended';
     }],
    ['bob disconnects: alice and carol get onLeave', async () => {
      await bob.chat.disconnect();
      users.splice(users.indexOf(bob), 1);
      for (const u of [alice, carol]) {
        assert.deepStrictEqual(await take(u, 'onLeave'), { route: 'onLeave', user: 'bob' });
      }
      await alice.chat.send('room1', 'alice', '*', 'still here');
      for (const u of [alice, carol]) {
        assert.deepStrictEqual(await take(u, 'onChat'),
                               { msg: 'still here', from: 'alice', target: '*' });
      }
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
  for (const u of [alice, eve]) {
    if (u) {
      await u.chat.disconnect();
    }
  }
  if (carol) {
    carol.close();
  }
  await sleep(100);
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
