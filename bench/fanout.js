// The reference side of bench/fanout.c: what the real pomelo 2.2.7 frontend does for a channel
// push to N members of one frontend, timed the same way (ns per member per push, median of R
// runs of ceil(20000 / N) pushes).
//
//   node [--expose-gc] bench/fanout.js [--reps R] [--sizes N1,N2,...]
//
// A channel push reaches a frontend as channelRemote.pushMessage(route, msg, uids): per uid,
// sessionService.getByUid -> sids; connector.send encodes the message ONCE (JSON.stringify, then
// Message.encode); the direct push scheduler calls sessionService.sendMessage(sid) per sid ->
// session.send -> HybridSocket.send, which runs Package.encode PER MEMBER (a new Buffer and a
// copy) and hands it to its socket: over raw TCP pomelo's tcpsocket.send -> net.Socket.write;
// over WebSocket ws 1.1.1's WebSocket.send -> Sender.send, which frames it into ANOTHER new
// Buffer (header + copy) -> net.Socket.write. net.Socket.write is modelled here as pushing the
// buffer onto a per-member array: the kernel and libuv side is not measured, as on the C side.
//
// Three implementations run side by side (one after the other, each R pushes after warm-up):
//   model: the steps above transcribed from pomelo 2.2.7 (channelRemote.js, sessionService.js,
//          connector.js, coder.js, pushSchedulers/direct.js, hybridsocket.js,
//          hybrid/tcpsocket.js) and ws 1.1.1 (WebSocket.send, Sender.send/flush/frameAndSend),
//          logging removed, with the npm pomelo-protocol 0.1.6 of tests/peers.
//   real:  the same path on the real modules of pomelo 2.2.7 and ws 1.1.1 from
//          tests/peers/pomelo-server (when installed), with net.Socket replaced as above.
//   lean:  not pomelo's code: the encode-once design of libpomelo written in JS (one
//          Message.encode + Package.encode per push, per uid the sessions, per session the
//          shared buffer, plus one shared WS header for WebSocket members): a floor for node.
// Memory: process.memoryUsage() growth per session after building N sessions of each model (a
// rough model: JS objects of the session layer only; no net.Socket, libuv handle or ws
// Receiver, which a real connection adds). Lines starting with "@" are for bench/micro.sh.
'use strict';

const path = require('path');
const fs = require('fs');
const util = require('util');
const EventEmitter = require('events').EventEmitter;
const Stream = require('stream');

const peers = path.join(__dirname, '..', 'tests', 'peers');
let protocol;
try {
  protocol = require(path.join(peers, 'node_modules', 'pomelo-protocol'));
} catch (e) {
  console.log('bench/fanout.js: skipped: pomelo-protocol is not installed (npm ci in tests/peers)');
  process.exit(77);
}
const { Package, Message } = protocol;

const ROUTE = 'onChat';
const BODY = '{"from":"u1024","target":"*",' +
  '"msg":"hello everyone in this room, see you at the castle gate at 10!"}';
const MSG = JSON.parse(BODY); // what a backend hands to channel.pushMessage
if (JSON.stringify(MSG) !== BODY || BODY.length !== 100) throw new Error('body');
const WARMUP = 3;
// A run pushes at least this many messages in all (several pushes when N is small).
const BATCH_MEMBERS = 20000;

function parseArgs() {
  const o = { reps: 21, sizes: [1000, 10000, 100000] };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === '--reps') o.reps = parseInt(a[++i], 10);
    else if (a[i] === '--sizes') o.sizes = a[++i].split(',').map((x) => parseInt(x, 10));
    else {
      console.error('usage: node bench/fanout.js [--reps R] [--sizes N1,N2,...]');
      process.exit(2);
    }
  }
  return o;
}

function median(v) {
  const s = v.slice().sort((x, y) => x - y);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

// The network socket: write() keeps the buffer (one array per member).
function NetModel() {
  EventEmitter.call(this);
  this.out = [];
  this.remoteAddress = '127.0.0.1';
  this.remotePort = 40000;
}
util.inherits(NetModel, EventEmitter);
NetModel.prototype.write = function (buf) {
  this.out.push(buf);
  return true;
};

// ---------------------------------------------------------------------------------------------
// model: pomelo 2.2.7 and ws 1.1.1, transcribed (logging removed)
// ---------------------------------------------------------------------------------------------

const model = (function () {
  const ST_INITED = 0;
  const ST_WORKING = 2;

  // common/service/sessionService.js
  function SessionService() {
    this.singleSession = undefined;
    this.sessions = {};
    this.uidMap = {};
  }
  SessionService.prototype.create = function (sid, frontendId, socket) {
    const session = new Session(sid, frontendId, socket, this);
    this.sessions[session.id] = session;
    return session;
  };
  SessionService.prototype.bind = function (sid, uid, cb) {
    const session = this.sessions[sid];
    let sessions = this.uidMap[uid];
    if (!sessions) sessions = this.uidMap[uid] = [];
    for (let i = 0, l = sessions.length; i < l; i++) {
      if (sessions[i].id === session.id) return process.nextTick(cb);
    }
    sessions.push(session);
    session.bind(uid);
    if (cb) process.nextTick(cb);
  };
  SessionService.prototype.get = function (sid) {
    return this.sessions[sid];
  };
  SessionService.prototype.getByUid = function (uid) {
    return this.uidMap[uid];
  };
  SessionService.prototype.sendMessage = function (sid, msg) {
    const session = this.get(sid);
    if (!session) return false;
    return send(this, session, msg);
  };
  const send = function (service, session, msg) {
    session.send(msg);
    return true;
  };
  function Session(sid, frontendId, socket, service) {
    EventEmitter.call(this);
    this.id = sid;
    this.frontendId = frontendId;
    this.uid = null;
    this.settings = {};
    this.__socket__ = socket;
    this.__sessionService__ = service;
    this.__state__ = ST_INITED;
  }
  util.inherits(Session, EventEmitter);
  Session.prototype.bind = function (uid) {
    this.uid = uid;
    this.emit('bind', uid);
  };
  Session.prototype.send = function (msg) {
    this.__socket__.send(msg);
  };

  // connectors/hybridsocket.js
  function HybridSocket(id, socket) {
    EventEmitter.call(this);
    this.id = id;
    this.socket = socket;
    this.remoteAddress = { ip: socket._socket.remoteAddress, port: socket._socket.remotePort };
    const self = this;
    socket.once('close', this.emit.bind(this, 'disconnect'));
    socket.on('error', this.emit.bind(this, 'error'));
    socket.on('message', function (msg) {
      if (msg) self.emit('message', Package.decode(msg));
    });
    this.state = ST_INITED;
  }
  util.inherits(HybridSocket, EventEmitter);
  HybridSocket.prototype.sendRaw = function (msg) {
    if (this.state !== ST_WORKING) return;
    this.socket.send(msg, { binary: true }, function (err) {
      if (err) throw err;
    });
  };
  HybridSocket.prototype.send = function (msg) {
    if (msg instanceof String) {
      msg = Buffer.from(msg);
    } else if (!(msg instanceof Buffer)) {
      msg = Buffer.from(JSON.stringify(msg));
    }
    this.sendRaw(Package.encode(Package.TYPE_DATA, msg));
  };

  // connectors/hybrid/tcpsocket.js (the parts a send uses)
  function TcpSocket(socket) {
    Stream.call(this);
    this.readable = true;
    this.writeable = true;
    this._socket = socket;
    this.headSize = 4;
    this.headBuffer = Buffer.alloc(4);
    this.headOffset = 0;
    this.packageOffset = 0;
    this.packageSize = 0;
    this.packageBuffer = null;
    this.state = 1;
  }
  util.inherits(TcpSocket, Stream);
  TcpSocket.prototype.send = function (msg, encode, cb) {
    this._socket.write(msg, encode, cb);
  };

  // ws 1.1.1 lib/WebSocket.js send() and lib/Sender.js, server side (unmasked), no extensions
  const OPEN = 1;
  function WebSocket(socket) {
    EventEmitter.call(this);
    this._socket = socket;
    this.readyState = OPEN;
    this._isServer = true;
    this.extensions = {};
    this._queue = null;
    this._sender = new Sender(socket, this.extensions);
  }
  util.inherits(WebSocket, EventEmitter);
  WebSocket.prototype.send = function (data, options, cb) {
    if (typeof options === 'function') {
      cb = options;
      options = {};
    }
    if (this.readyState !== OPEN) throw new Error('not opened');
    if (!data) data = '';
    if (this._queue) {
      const self = this;
      this._queue.push(function () { self.send(data, options, cb); });
      return;
    }
    options = options || {};
    options.fin = true;
    if (typeof options.binary === 'undefined') {
      options.binary = (data instanceof ArrayBuffer || data instanceof Buffer ||
        data instanceof Uint8Array);
    }
    if (typeof options.mask === 'undefined') options.mask = !this._isServer;
    if (typeof options.compress === 'undefined') options.compress = true;
    if (!this.extensions['permessage-deflate']) options.compress = false;
    this._sender.send(data, options, cb);
  };
  function Sender(socket, extensions) {
    EventEmitter.call(this);
    this._socket = socket;
    this.extensions = extensions || {};
    this.firstFragment = true;
    this.compress = false;
    this.messageHandlers = [];
    this.processing = false;
  }
  util.inherits(Sender, EventEmitter);
  Sender.prototype.send = function (data, options, cb) {
    const finalFragment = !(options && options.fin === false);
    const mask = options && options.mask;
    let compress = options && options.compress;
    let opcode = options && options.binary ? 2 : 1;
    if (this.firstFragment === false) {
      opcode = 0;
      compress = false;
    } else {
      this.firstFragment = false;
      this.compress = compress;
    }
    if (finalFragment) this.firstFragment = true;
    const compressFragment = this.compress;
    const self = this;
    this.messageHandlers.push(function (callback) {
      self.applyExtensions(data, finalFragment, compressFragment, function (err, data) {
        if (err) throw err;
        self.frameAndSend(opcode, data, finalFragment, mask, compress, cb);
        callback();
      });
    });
    this.flush();
  };
  Sender.prototype.flush = function () {
    if (this.processing) return;
    const handler = this.messageHandlers.shift();
    if (!handler) return;
    this.processing = true;
    const self = this;
    handler(function () {
      self.processing = false;
      self.flush();
    });
  };
  Sender.prototype.applyExtensions = function (data, fin, compress, callback) {
    callback(null, data); // no permessage-deflate (pomelo's clients do not negotiate it)
  };
  // The unmasked path of frameAndSend: a new buffer, the header, a copy of the data.
  Sender.prototype.frameAndSend = function (opcode, data, finalFragment, maskData, compressed, cb) {
    const dataLength = data.length;
    let dataOffset = 2;
    let secondByte = dataLength;
    if (dataLength >= 65536) {
      dataOffset += 8;
      secondByte = 127;
    } else if (dataLength > 125) {
      dataOffset += 2;
      secondByte = 126;
    }
    const mergeBuffers = dataLength < 32768;
    const totalLength = mergeBuffers ? dataLength + dataOffset : dataOffset;
    const outputBuffer = Buffer.alloc(totalLength); // ws 1.1.1: new Buffer(n), zero-filled since node 8
    outputBuffer[0] = finalFragment ? opcode | 0x80 : opcode;
    if (compressed) outputBuffer[0] |= 0x40;
    if (secondByte === 126) outputBuffer.writeUInt16BE(dataLength, 2);
    else if (secondByte === 127) {
      outputBuffer.writeUInt32BE(0, 2);
      outputBuffer.writeUInt32BE(dataLength, 6);
    }
    outputBuffer[1] = secondByte;
    if (mergeBuffers) {
      data.copy(outputBuffer, dataOffset);
      this._socket.write(outputBuffer, 'binary', cb);
    } else {
      this._socket.write(outputBuffer, 'binary');
      this._socket.write(data, 'binary', cb);
    }
  };

  // connectors/common/coder.js: encode (push) and encodeBody (no protobuf)
  function encode(reqId, route, msg) {
    return composePush(this, route, msg);
  }
  function composePush(server, route, msgBody) {
    if (!route || !msgBody) return null;
    msgBody = Buffer.from(JSON.stringify(msgBody), 'utf8');
    return Message.encode(0, Message.TYPE_PUSH, 0, route, msgBody);
  }

  // components/connector.js send, pushSchedulers/direct.js, remote/frontend/channelRemote.js
  function makeApp(sessionService) {
    const app = { serverId: 'connector-server-1', components: {} };
    app.get = function (name) {
      return name === 'sessionService' ? sessionService : undefined;
    };
    const directScheduler = {
      schedule(reqId, route, msg, recvs, opts, cb) {
        opts = opts || {};
        for (let i = 0, l = recvs.length; i < l; i++) sessionService.sendMessage(recvs[i], msg);
        if (cb) process.nextTick(cb);
      },
    };
    app.components.__pushScheduler__ = {
      schedule(reqId, route, msg, recvs, opts, cb) {
        directScheduler.schedule(reqId, route, msg, recvs, opts, cb);
      },
    };
    app.components.__connector__ = {
      connector: { encode },
      send(reqId, route, msg, recvs, opts, cb) {
        const emsg = this.connector.encode(reqId, route, msg);
        app.components.__pushScheduler__.schedule(reqId, route, emsg, recvs, opts, cb);
      },
    };
    return app;
  }
  function pushMessage(app, route, msg, uids, opts, cb) {
    const connector = app.components.__connector__;
    const sessionService = app.get('sessionService');
    const fails = [];
    const sids = [];
    let sessions, j, k;
    for (let i = 0, l = uids.length; i < l; i++) {
      sessions = sessionService.getByUid(uids[i]);
      if (!sessions) fails.push(uids[i]);
      else for (j = 0, k = sessions.length; j < k; j++) sids.push(sessions[j].id);
    }
    connector.send(null, route, msg, sids, opts, function (err) {
      cb(err, fails);
    });
  }

  function build(n) {
    const ss = new SessionService();
    const app = makeApp(ss);
    const nets = [];
    for (let i = 0; i < n; i++) {
      const net = new NetModel();
      const sock = i < n >> 1 ? new TcpSocket(net) : new WebSocket(net);
      const hs = new HybridSocket(i + 1, sock);
      hs.state = ST_WORKING; // after the handshake and the ACK
      ss.create(i + 1, 'connector-server-1', hs);
      ss.bind(i + 1, 'u' + i, function () {});
      nets.push(net);
    }
    return {
      nets,
      keep: ss,
      push(uids, cb) {
        pushMessage(app, ROUTE, MSG, uids, null, cb);
      },
    };
  }
  return { build };
})();

// ---------------------------------------------------------------------------------------------
// real: the modules of pomelo 2.2.7 and ws 1.1.1 themselves
// ---------------------------------------------------------------------------------------------

function loadReal() {
  const base = path.join(peers, 'pomelo-server', 'node_modules');
  const lib = path.join(base, 'pomelo', 'lib');
  if (!fs.existsSync(lib)) return null;
  const r = (p) => require(path.join(lib, p));
  const SessionService = r('common/service/sessionService.js');
  const HybridSocket = r('connectors/hybridsocket.js');
  const TcpSocket = r('connectors/hybrid/tcpsocket.js');
  const coder = r('connectors/common/coder.js');
  const channelRemote = r('common/remote/frontend/channelRemote.js');
  const connectorComponent = r('components/connector.js');
  const pushSchedulerComponent = r('components/pushScheduler.js');
  const WebSocket = require(path.join(base, 'ws', 'lib', 'WebSocket.js'));
  const Sender = require(path.join(base, 'ws', 'lib', 'Sender.js'));
  const ST_WORKING = 2;
  // Production logging: pomelo-logger over log4js at INFO (the default logs every push at DEBUG,
  // with its uid and sid lists as JSON).
  require(path.join(base, 'log4js')).setGlobalLogLevel('INFO');

  function build(n) {
    const ss = new SessionService({});
    const app = { serverId: 'connector-server-1', components: {} };
    app.get = function (name) {
      return name === 'sessionService' ? ss : undefined;
    };
    app.components.__connector__ = connectorComponent(app, { connector: { encode: coder.encode } });
    app.components.__pushScheduler__ = pushSchedulerComponent(app, {});
    const remote = channelRemote(app);
    const nets = [];
    for (let i = 0; i < n; i++) {
      const net = new NetModel();
      let sock;
      if (i < n >> 1) {
        sock = new TcpSocket(net, { headSize: 4, headHandler: () => 0 });
      } else {
        // An open server-side ws 1.1.1 WebSocket around `net` (its constructor wants a real
        // upgrade; send() reads only these fields).
        sock = Object.create(WebSocket.prototype);
        EventEmitter.call(sock);
        sock._socket = net;
        sock.readyState = WebSocket.OPEN;
        sock._isServer = true;
        sock.extensions = {};
        sock._queue = null;
        sock._sender = new Sender(net, sock.extensions);
      }
      const hs = new HybridSocket(i + 1, sock);
      hs.state = ST_WORKING;
      ss.create(i + 1, 'connector-server-1', hs);
      ss.bind(i + 1, 'u' + i, function () {});
      nets.push(net);
    }
    return {
      nets,
      keep: ss,
      push(uids, cb) {
        remote.pushMessage(ROUTE, MSG, uids, null, cb);
      },
    };
  }
  return { build };
}

// ---------------------------------------------------------------------------------------------
// lean: encode once, hand the same buffer to every member (libpomelo's design, in JS)
// ---------------------------------------------------------------------------------------------

const lean = {
  build(n) {
    const uidMap = new Map();
    const nets = [];
    for (let i = 0; i < n; i++) {
      const net = new NetModel();
      const s = { id: i + 1, uid: 'u' + i, ws: i >= n >> 1, net };
      uidMap.set(s.uid, [s]);
      nets.push(net);
    }
    return {
      nets,
      keep: uidMap,
      push(uids, cb) {
        const body = Buffer.from(JSON.stringify(MSG), 'utf8');
        const pkg = Package.encode(Package.TYPE_DATA, Message.encode(0, Message.TYPE_PUSH, 0, ROUTE, body));
        const wsHead = Buffer.from([0x82, pkg.length]); // pkg.length < 126 here
        for (let i = 0; i < uids.length; i++) {
          const sessions = uidMap.get(uids[i]);
          if (!sessions) continue;
          for (let j = 0; j < sessions.length; j++) {
            const s = sessions[j];
            if (s.ws) s.net.out.push(wsHead, pkg);
            else s.net.out.push(pkg);
          }
        }
        process.nextTick(cb);
      },
    };
  },
};

// ---------------------------------------------------------------------------------------------

function memNow() {
  if (global.gc) {
    global.gc();
    global.gc();
  }
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

function checkOutput(name, inst, n) {
  // Every member got exactly one buffer (two for lean WS members); TCP members a DATA package,
  // WS members a binary frame around it.
  const tcp = inst.nets[0].out;
  const ws = inst.nets[n - 1].out;
  const last = (a) => a[a.length - 1];
  if (tcp.length !== 1 || tcp[0][0] !== Package.TYPE_DATA) throw new Error(name + ': tcp output');
  const wsBytes = Buffer.concat(ws);
  if (wsBytes[0] !== 0x82 || wsBytes[2] !== Package.TYPE_DATA || last(ws).length < 4) {
    throw new Error(name + ': ws output');
  }
  return { tcpBytes: tcp[0].length, wsBytes: wsBytes.length };
}

async function runSize(n, reps, impls) {
  const half = n >> 1;
  const uids = [];
  for (let i = 0; i < n; i++) {
    const t = i >> 1;
    let j = i % 2 ? half + t : t;
    if (j >= (i % 2 ? n : half)) j = i % 2 ? t : half + t;
    uids.push('u' + j);
  }
  console.log(`\nN = ${n} sessions (${half} raw TCP, ${n - half} WebSocket), uids interleaved`);
  const insts = [];
  for (const impl of impls) {
    const m0 = memNow();
    const t0 = process.hrtime.bigint();
    const inst = impl.make.build(n);
    const t1 = process.hrtime.bigint();
    await new Promise((r) => setImmediate(r)); // the bind callbacks (process.nextTick)
    const m1 = memNow();
    insts.push({ impl, inst, push: [], mem: (m1 - m0) / n, setupMs: Number(t1 - t0) / 1e6 });
  }
  let pending = 0;
  const done = (err, fails) => {
    if (err || (fails && fails.length)) throw new Error('push failed');
    pending--;
  };
  // One implementation after the other, so that each pays for the garbage collection of its own
  // buffers (in a steady state: warm-up pushes first), not of its neighbour's.
  const batch = Math.max(1, Math.ceil(BATCH_MEMBERS / n));
  for (const x of insts) {
    memNow();
    for (let r = -WARMUP; r < reps; r++) {
      let ns = 0;
      for (let j = 0; j < batch; j++) {
        pending++;
        const t0 = process.hrtime.bigint();
        x.inst.push(uids, done);
        const t1 = process.hrtime.bigint();
        ns += Number(t1 - t0);
        if (r === -WARMUP && j === 0) x.bytes = checkOutput(x.impl.name, x.inst, n);
        for (let i = 0; i < n; i++) x.inst.nets[i].out.length = 0; // the socket "wrote" it
        await new Promise((res) => setImmediate(res)); // the push callback, as an event loop would
      }
      if (r >= 0) x.push.push(ns / n / batch);
    }
  }
  if (pending !== 0) throw new Error('callbacks missing');
  console.log(`push of ${BODY.length} bytes on "${ROUTE}" (median of ${reps} runs of ${batch} ` +
    `push${batch > 1 ? 'es' : ''}, ns per member per push):`);
  console.log('  impl    push ns   (min..max)          B/member tcp/ws   set-up ms  ' +
    'heap+external B/session (rough)');
  for (const x of insts) {
    const s = x.push.slice().sort((a, b) => a - b);
    const med = median(x.push);
    console.log(`  ${x.impl.name.padEnd(6)} ${med.toFixed(1).padStart(8)}   ` +
      `${(s[0].toFixed(1) + '..' + s[s.length - 1].toFixed(1)).padEnd(18)}  ` +
      `${(x.bytes.tcpBytes + '/' + x.bytes.wsBytes).padEnd(15)} ${x.setupMs.toFixed(0).padStart(9)}   ` +
      `${x.mem.toFixed(0)}${global.gc ? '' : ' (no --expose-gc: unreliable)'}`);
    console.log(`@ fanout node push.${x.impl.name} ${n} ${med.toFixed(2)} ns/member`);
    console.log(`@ fanout node mem.${x.impl.name} ${n} ${x.mem.toFixed(1)} B/session`);
  }
}

async function main() {
  const o = parseArgs();
  const impls = [{ name: 'model', make: model }];
  let real = null;
  try {
    real = loadReal();
  } catch (e) {
    console.log(`(real pomelo modules not loadable: ${e.message})`);
  }
  if (real) impls.push({ name: 'real', make: real });
  else console.log('(tests/peers/pomelo-server not installed: no "real" row; npm ci there for it)');
  impls.push({ name: 'lean', make: lean });
  // Node's Buffer() constructor (used by pomelo-protocol) inspects the stack of its first 10000
  // callers for its deprecation warning; a long-running server is past that: so are we.
  for (let i = 0; i < 12000; i++) Package.encode(Package.TYPE_DATA, Buffer.alloc(8));
  console.log(`node ${process.version} fanout reference (pomelo 2.2.7 frontend push path; ` +
    `implementations one after the other)`);
  for (const n of o.sizes) await runSize(n, o.reps, impls);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
