// Helpers shared by the WebSocket peer tests (ws-jsclient.js, ws-node.js); not a test itself.
//
// - startEcho(path, args), startChat(path): run examples/pomelo-echo (or another echo loop) or
//   examples/chat/pomelo-chat on 127.0.0.1, free ports, and resolve once they printed where they
//   listen; stop() sends SIGTERM and resolves with the exit status (0 when it stopped cleanly,
//   so a sanitizer report in an ASan build fails the test). startProgram is the general case.
// - startRelay(host, port): a TCP relay in front of a server that records both byte streams, as
//   they were on the wire, and parses them as an HTTP upgrade followed by WebSocket frames
//   (WsParser), so a test can check what a client and a server really sent, and when; for a
//   raw-TCP client the raw chunks are kept too. wirePackages(conn, dir) gives the Pomelo packages
//   of one direction either way, and wireMessages(conn, dir) the DATA messages among them.
// - WsParser: an incremental parser of one direction of a WebSocket connection.
// - packages(buf): the Pomelo packages in a buffer (whole ones only; the rest is reported).
// - withTimeout(promise, what, ms): the promise, or an error after ms (3 s by default).
// - PomeloSocket(sock): raw-TCP Pomelo over a connected stream (a net or tls socket), packages
//   encoded and decoded with the real pomelo-protocol: handshake(), request(), notify(), and
//   until(what, test) for anything that arrives.
// - realProtos(server, client): what the real server announces for config/serverProtos.json and
//   config/clientProtos.json ({server, client, version}, parsed by pomelo-protobuf, the version
//   computed as lib/components/protobuf.js does); dictVersion(dict) likewise for a dictionary;
//   handlerDict(routes): the dictionary of handler routes (sorted, codes from 1).
// - freshProtobuf(): a new instance of pomelo-protobuf's node entry point (what the real server
//   and a node client use; it keeps its protos in module state, so each user needs its own);
//   browserProtobuf(): a new instance of its browser build, lib/client/protobuf.js (CESU-8
//   strings, varints with wire type 2), run as a page runs it, with the decodeStr alias of the
//   demo page (examples/chat/web/index.html; pomelo-jsclient-websocket issue #17).
// - hex(bytes): "0a 02 68 69" for messages; describeWire(conn): a relay connection's packages,
//   one line each; catchUncaught(fn): fn(), an uncaught exception meanwhile rejecting it.
'use strict';

const childProcess = require('child_process');
const net = require('net');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
const WAIT_MS = 3000; // how long the helpers below wait for something by default

// Runs `exe` with `args` and resolves once its standard output matched `ready` (10 s at most):
// {child, pid, match, exited, stderr(), stop()}; stop() sends SIGTERM and resolves with the exit
// status (a string when it did not exit in 5 s). `name` is for the messages. The process is
// killed when this one exits.
function startProgram(exe, args, ready, name) {
  return new Promise((resolve, reject) => {
    const child = childProcess.spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let started = false;
    const timer = setTimeout(() => reject(new Error(name + ' did not start in 10 s')), 10000);
    const exited = new Promise((res) => child.on('exit', (code, sig) => res(sig || code)));
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => {
      out += d;
      const match = ready.exec(out);
      if (match && !started) {
        started = true;
        clearTimeout(timer);
        resolve({
          child,
          pid: child.pid,
          match,
          exited,
          stderr: () => err,
          stop: async () => {
            child.kill('SIGTERM');
            return Promise.race([exited, sleep(5000).then(() => 'no exit in 5 s')]);
          },
        });
      }
    });
    child.on('error', (e) => (clearTimeout(timer), reject(e)));
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (!started) {
        reject(new Error(name + ' exited (' + code + '): ' + err));
      }
    });
    process.on('exit', () => child.kill('SIGKILL'));
  });
}

// An echo server (or any program printing "listening on H:P") on 127.0.0.1, a free port.
async function startEcho(echoPath, extraArgs = []) {
  const args = ['--host', '127.0.0.1', '--port', '0'].concat(extraArgs);
  const p = await startProgram(echoPath, args, /^listening on (\S+):(\d+)$/m, 'pomelo-echo');
  return Object.assign(p, { host: p.match[1], port: Number(p.match[2]) });
}

// examples/chat/pomelo-chat on 127.0.0.1, free ports: adds host, gatePort, connectorPort.
async function startChat(chatPath) {
  const args = ['--host', '127.0.0.1', '--gate-port', '0', '--port', '0'];
  const p = await startProgram(chatPath, args,
                               /^gate on (\S+):(\d+), connector on (\S+):(\d+)$/m, 'pomelo-chat');
  return Object.assign(p, { host: p.match[1], gatePort: Number(p.match[2]),
                            connectorPort: Number(p.match[4]) });
}

// Incremental parser of one direction: an HTTP head (request or response), then frames.
// push(chunk, t) returns the frames completed by this chunk: {t, fin, rsv, opcode, masked,
// payload (unmasked)}; t is the time of the chunk that completed the frame. After a non-101
// response (or when the head is not an upgrade) the rest is kept as `body`.
class WsParser {
  constructor() {
    this.buf = Buffer.alloc(0);
    this.head = null;
    this.body = Buffer.alloc(0);
    this.frames = [];
    this.framing = false;
  }

  push(chunk, t) {
    const done = [];
    this.buf = Buffer.concat([this.buf, chunk]);
    if (this.head === null) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) {
        return done;
      }
      this.head = this.buf.subarray(0, end).toString('latin1');
      this.buf = this.buf.subarray(end + 4);
      this.framing = /^GET /.test(this.head) || /^HTTP\/1\.1 101 /.test(this.head);
    }
    if (!this.framing) {
      this.body = Buffer.concat([this.body, this.buf]);
      this.buf = Buffer.alloc(0);
      return done;
    }
    for (;;) {
      const b = this.buf;
      if (b.length < 2) {
        break;
      }
      const masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) {
          break;
        }
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) {
          break;
        }
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      const maskOff = off;
      if (masked) {
        off += 4;
      }
      if (b.length < off + len) {
        break;
      }
      const payload = Buffer.from(b.subarray(off, off + len));
      if (masked) {
        for (let i = 0; i < len; i++) {
          payload[i] ^= b[maskOff + (i & 3)];
        }
      }
      const f = {
        t,
        fin: (b[0] & 0x80) !== 0,
        rsv: (b[0] >> 4) & 7,
        opcode: b[0] & 0x0f,
        masked,
        payload,
      };
      this.frames.push(f);
      done.push(f);
      this.buf = b.subarray(off + len);
    }
    return done;
  }

  // The data messages (continuations joined): {t (of the last frame), opcode, frames, payload}.
  messages() {
    const out = [];
    let cur = null;
    for (const f of this.frames) {
      if (f.opcode >= 8) {
        continue;
      }
      if (f.opcode !== 0) {
        cur = { opcode: f.opcode, frames: 0, parts: [] };
      }
      if (!cur) {
        continue;
      }
      cur.frames++;
      cur.parts.push(f.payload);
      if (f.fin) {
        out.push({ t: f.t, opcode: cur.opcode, frames: cur.frames,
                   payload: Buffer.concat(cur.parts) });
        cur = null;
      }
    }
    return out;
  }

  // The close frame, if any: {t, code (null without one), reason}.
  closeFrame() {
    const f = this.frames.find((x) => x.opcode === 8);
    if (!f) {
      return null;
    }
    return {
      t: f.t,
      code: f.payload.length >= 2 ? f.payload.readUInt16BE(0) : null,
      reason: f.payload.subarray(2).toString('utf8'),
    };
  }
}

// The whole Pomelo packages in `buf`: {packages: [{type, body}], rest: bytes left over}.
function packages(buf) {
  const out = [];
  let off = 0;
  while (buf.length - off >= 4) {
    const len = (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3];
    if (buf.length - off < 4 + len) {
      break;
    }
    out.push({ type: buf[off], body: buf.subarray(off + 4, off + 4 + len) });
    off += 4 + len;
  }
  return { packages: out, rest: buf.length - off };
}

// A relay on 127.0.0.1 in front of host:port. Every accepted connection becomes an entry of
// `conns`: {c2s, s2c (WsParsers), clientEndAt, serverEndAt (ms since the relay started, when
// that side ended or closed its half; null while open)}.
function startRelay(host, port) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const conns = [];
    const sockets = new Set();
    const server = net.createServer((down) => {
      const c = { c2s: new WsParser(), s2c: new WsParser(), clientEndAt: null, serverEndAt: null,
                  raw: { c2s: [], s2c: [] } };
      conns.push(c);
      const up = net.connect(port, host);
      sockets.add(down);
      sockets.add(up);
      const now = () => Date.now() - t0;
      const record = (dir, d) => {
        c.raw[dir].push({ t: now(), data: Buffer.from(d) });
        if (c.raw.c2s.length && c.raw.c2s[0].data[0] !== 0x47 /* 'G' */) {
          return; // raw TCP: no HTTP head will come, keep only the raw chunks
        }
        c[dir].push(d, now());
      };
      down.on('data', (d) => (record('c2s', d), up.write(d)));
      up.on('data', (d) => (record('s2c', d), down.write(d)));
      const ended = (side, other) => () => {
        if (c[side] === null) {
          c[side] = now();
        }
        other.end();
      };
      down.on('end', ended('clientEndAt', up));
      up.on('end', ended('serverEndAt', down));
      down.on('close', () => (ended('clientEndAt', up)(), up.destroy()));
      up.on('close', () => (ended('serverEndAt', down)(), down.destroy()));
      down.on('error', () => {});
      up.on('error', () => {});
    });
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: server.address().port,
        conns,
        now: () => Date.now() - t0,
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

// The Pomelo packages that went one way (`dir` 'c2s' or 's2c') on a relay connection, over
// WebSocket (one package per data message, as both sides send them; a message holding more is
// split) or raw TCP: [{t, type, body}], t the time of the chunk or message that completed it.
function wirePackages(conn, dir) {
  const out = [];
  const upgraded = conn.raw.c2s.length > 0 && conn.raw.c2s[0].data[0] === 0x47; /* 'G' */
  if (upgraded) {
    for (const m of conn[dir].messages()) {
      for (const p of packages(m.payload).packages) {
        out.push({ t: m.t, type: p.type, body: Buffer.from(p.body) });
      }
    }
    return out;
  }
  let buf = Buffer.alloc(0);
  for (const chunk of conn.raw[dir]) {
    buf = Buffer.concat([buf, chunk.data]);
    const { packages: l, rest } = packages(buf);
    for (const p of l) {
      out.push({ t: chunk.t, type: p.type, body: Buffer.from(p.body) });
    }
    buf = buf.subarray(buf.length - rest);
  }
  return out;
}

// A DATA package's body as a message (spec 2.1), decoded here byte for byte: {t, id, type
// (0 request, 1 notify, 2 response, 3 push), compressRoute, route (a code when compressed, else
// the string decoded as UTF-8), routeBytes (uncompressed routes), body (Buffer)}.
function decodeMessage(body, t) {
  let off = 0;
  const flag = body[off++];
  const type = (flag >> 1) & 7;
  const compressRoute = flag & 1;
  let id = 0;
  if (type === 0 || type === 2) {
    let shift = 0;
    let b;
    do {
      b = body[off++];
      id += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
  }
  let route = null;
  let routeBytes = null;
  if (type === 0 || type === 1 || type === 3) {
    if (compressRoute) {
      route = (body[off] << 8) | body[off + 1];
      off += 2;
    } else {
      const len = body[off++];
      routeBytes = Buffer.from(body.subarray(off, off + len));
      route = routeBytes.toString('utf8');
      off += len;
    }
  }
  return { t, id, type, compressRoute, route, routeBytes, body: Buffer.from(body.subarray(off)) };
}

// The DATA messages of one direction of a relay connection (decodeMessage's form).
function wireMessages(conn, dir) {
  return wirePackages(conn, dir).filter((p) => p.type === 4).map((p) => decodeMessage(p.body, p.t));
}

// The handshake answer (or request, `dir` 'c2s') of a relay connection: {text, json}.
function wireHandshake(conn, dir = 's2c') {
  const p = wirePackages(conn, dir).find((x) => x.type === 1);
  if (!p) {
    return null;
  }
  const text = p.body.toString('utf8');
  return { text, json: JSON.parse(text), body: p.body };
}

// What the real server announces for these proto files (lib/components/protobuf.js):
// {server, client, version}, the parsed forms made by pomelo-protobuf's own parser.
function realProtos(serverFile = {}, clientFile = {}) {
  const crypto = require('crypto');
  const protobuf = require('pomelo-protobuf');
  const server = protobuf.parse(serverFile);
  const client = protobuf.parse(clientFile);
  const version = crypto.createHash('md5')
    .update(JSON.stringify(client) + JSON.stringify(server)).digest('base64');
  return { server, client, version };
}

// lib/components/dictionary.js: base64(md5(JSON.stringify(dict))).
function dictVersion(dict) {
  return require('crypto').createHash('md5').update(JSON.stringify(dict)).digest('base64');
}

// Handler routes as the real server numbers them: sorted, codes 1, 2, 3...
function handlerDict(routes) {
  const dict = {};
  routes.slice().sort().forEach((r, i) => (dict[r] = i + 1));
  return dict;
}

function freshProtobuf() {
  const path = require('path');
  const dir = path.dirname(require.resolve('pomelo-protobuf/package.json'));
  const saved = {};
  for (const k of Object.keys(require.cache)) {
    if (k.startsWith(dir + path.sep)) {
      saved[k] = require.cache[k];
      delete require.cache[k];
    }
  }
  const pb = require('pomelo-protobuf');
  for (const k of Object.keys(require.cache)) {
    if (k.startsWith(dir + path.sep)) {
      delete require.cache[k];
    }
  }
  Object.assign(require.cache, saved); // others' require('pomelo-protobuf') is left as it was
  return pb;
}

// The browser build's parts attach themselves to a free variable `protobuf` when one exists,
// else to module.exports: the file runs in a function whose `module` is a fresh stand-in and
// whose `protobuf` is undefined, so no global is read or written.
function browserProtobuf() {
  const fs = require('fs');
  const path = require('path');
  const vm = require('vm');
  const file = path.join(path.dirname(require.resolve('pomelo-protobuf/package.json')),
                         'lib', 'client', 'protobuf.js');
  const fn = vm.runInThisContext('(function (module, protobuf) {' +
                                 fs.readFileSync(file, 'utf8') + '\n})', { filename: file });
  const module = { exports: {} };
  fn.call(globalThis, module, undefined);
  const pb = module.exports;
  if (typeof pb.encoder.encode !== 'function' || pb.decodeStr !== undefined) {
    throw new Error(file + ': not the browser build expected');
  }
  pb.decodeStr = pb.decode;
  return pb;
}

// The packages of a relay connection, both directions in time order, one line each (for failure
// messages): "+123ms c2s DATA request id=1 route=3 (code) 0a 05 ...".
function describeWire(conn) {
  if (!conn) {
    return '    (no connection)';
  }
  const names = { 1: 'HANDSHAKE', 2: 'ACK', 3: 'HEARTBEAT', 4: 'DATA', 5: 'KICK' };
  const kinds = ['request', 'notify', 'response', 'push'];
  const all = [];
  for (const dir of ['c2s', 's2c']) {
    for (const p of wirePackages(conn, dir)) {
      let what = (names[p.type] || 'type ' + p.type) + ' ' + p.body.toString('utf8').slice(0, 300);
      if (p.type === 4) {
        const m = decodeMessage(p.body);
        what = 'DATA ' + (kinds[m.type] || 'type ' + m.type) + ' id=' + m.id + ' route=' +
          m.route + (m.compressRoute ? ' (code)' : '') + ' ' + hex(m.body).slice(0, 300);
      }
      all.push({ t: p.t, line: '    +' + String(p.t).padStart(6) + 'ms ' + dir + ' ' + what });
    }
  }
  return all.sort((a, b) => a.t - b.t).map((x) => x.line).join('\n');
}

// Runs `fn`; an uncaught exception meanwhile (a client that throws in an event handler) rejects
// instead of ending the process.
async function catchUncaught(fn) {
  let onUncaught;
  const crashed = new Promise((resolve, reject) => {
    onUncaught = (e) => reject(new Error('uncaught exception: ' + (e && e.stack ? e.stack : e)));
  });
  process.on('uncaughtException', onUncaught);
  try {
    return await Promise.race([fn(), crashed]);
  } finally {
    process.off('uncaughtException', onUncaught);
  }
}

function hex(bytes) {
  return Buffer.from(bytes).toString('hex').replace(/(..)(?!$)/g, '$1 ');
}

// ---------------------------------------------------------------------------------------------
// Raw-TCP Pomelo over a stream

// `promise`, or a rejection "no WHAT in MS ms" after `ms`.
function withTimeout(promise, what, ms = WAIT_MS) {
  let timer;
  return Promise.race([
    promise,
    new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error('no ' + what + ' in ' + ms + ' ms')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

class PomeloSocket {
  // `sock`: a net.Socket or tls.TLSSocket, connecting or connected; `ready` the event that says
  // it is ('connect' or 'secureConnect').
  constructor(sock, ready = 'connect') {
    const { Package, Message } = require('pomelo-protocol'); // the node branch: Buffer
    this.Package = Package;
    this.Message = Message;
    this.sock = sock;
    this.got = [];
    this.waiters = [];
    this.buf = Buffer.alloc(0);
    this.sock.on('error', (e) => (this.error = e));
    this.ended = new Promise((resolve) => this.sock.on('close', resolve));
    this.connected = new Promise((resolve, reject) => {
      this.sock.on(ready, resolve);
      this.sock.on('error', reject);
    });
    this.sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      const { packages: l, rest } = packages(this.buf);
      this.buf = this.buf.subarray(this.buf.length - rest);
      for (const p of l) {
        const o = { type: p.type };
        if (p.type === Package.TYPE_DATA) {
          const m = Message.decode(p.body);
          o.msg = { id: m.id, type: m.type, route: m.route,
                    body: JSON.parse(Buffer.from(m.body).toString()) }; /* Uint8Array or Buffer */
        } else if (p.body.length) {
          o.body = JSON.parse(p.body.toString());
        }
        this.got.push(o);
      }
      this.waiters = this.waiters.filter((w) => !w());
    });
  }

  // Resolves with the first value test() returns truthy (now or on an arrival), or rejects
  // after `ms`.
  until(what, test, ms = WAIT_MS) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no ' + what + ' in ' + ms + ' ms')), ms);
      const w = () => {
        const v = test();
        if (v) {
          clearTimeout(timer);
          resolve(v);
        }
        return v;
      };
      if (!w()) {
        this.waiters.push(w);
      }
    });
  }

  send(type, body) {
    this.sock.write(this.Package.encode(type, body));
  }

  // Handshake (`sys` as given), ACK, and the server's first heartbeat; resolves with the answer.
  async handshake(sys = { type: 'node-tcp', version: '1' }) {
    await this.connected;
    this.send(this.Package.TYPE_HANDSHAKE, Buffer.from(JSON.stringify({ sys })));
    const hs = await this.until('handshake', () =>
      this.got.find((p) => p.type === this.Package.TYPE_HANDSHAKE));
    this.send(this.Package.TYPE_HANDSHAKE_ACK);
    await this.until('heartbeat', () =>
      this.got.find((p) => p.type === this.Package.TYPE_HEARTBEAT));
    return hs.body;
  }

  request(id, route, body) {
    this.send(this.Package.TYPE_DATA, this.Message.encode(id, this.Message.TYPE_REQUEST, 0, route,
                                                          Buffer.from(JSON.stringify(body))));
    return this.until('response ' + id, () =>
      this.got.find((p) => p.msg && p.msg.type === this.Message.TYPE_RESPONSE && p.msg.id === id));
  }

  notify(route, body) {
    this.send(this.Package.TYPE_DATA, this.Message.encode(0, this.Message.TYPE_NOTIFY, 0, route,
                                                          Buffer.from(JSON.stringify(body))));
  }

  // The n-th push (0-based) on `route`.
  push(route, n = 0, ms = WAIT_MS) {
    return this.until('push ' + route + ' #' + n, () => {
      const l = this.got.filter((p) => p.msg && p.msg.type === this.Message.TYPE_PUSH &&
                                       p.msg.route === route);
      return l.length > n ? l[n] : null;
    }, ms);
  }

  kick() {
    return this.until('KICK', () => this.got.find((p) => p.type === this.Package.TYPE_KICK));
  }
}

module.exports = {
  sleep, withTimeout, startProgram, startEcho, startChat, startRelay, WsParser, packages,
  wirePackages, decodeMessage, wireMessages, wireHandshake, realProtos, dictVersion, handlerDict,
  freshProtobuf, browserProtobuf, describeWire, catchUncaught, hex, PomeloSocket,
};
