// Helpers shared by the WebSocket peer tests (ws-jsclient.js, ws-node.js); not a test itself.
//
// - startEcho(path, args), startChat(path): run examples/pomelo-echo (or another echo loop) or
//   examples/chat/pomelo-chat on 127.0.0.1, free ports, and resolve once they printed where they
//   listen; stop() sends SIGTERM and resolves with the exit status (0 when it stopped cleanly,
//   so a sanitizer report in an ASan build fails the test). startProgram is the general case.
// - startRelay(host, port): a TCP relay in front of a server that records both byte streams, as
//   they were on the wire, and parses them as an HTTP upgrade followed by WebSocket frames
//   (WsParser), so a test can check what a client and a server really sent, and when.
// - WsParser: an incremental parser of one direction of a WebSocket connection.
// - packages(buf): the Pomelo packages in a buffer (whole ones only; the rest is reported).
// - withTimeout(promise, what, ms): the promise, or an error after ms (3 s by default).
// - PomeloSocket(sock): raw-TCP Pomelo over a connected stream (a net or tls socket), packages
//   encoded and decoded with the real pomelo-protocol: handshake(), request(), notify(), and
//   until(what, test) for anything that arrives.
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
      const c = { c2s: new WsParser(), s2c: new WsParser(), clientEndAt: null, serverEndAt: null };
      conns.push(c);
      const up = net.connect(port, host);
      sockets.add(down);
      sockets.add(up);
      const now = () => Date.now() - t0;
      down.on('data', (d) => (c.c2s.push(d, now()), up.write(d)));
      up.on('data', (d) => (c.s2c.push(d, now()), down.write(d)));
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
  PomeloSocket,
};
