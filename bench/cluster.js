// bench/cluster.js: end-to-end figures of a chatofpomelo-shaped cluster (1 gate, connectors,
// chat servers) seen from its clients, for two or more clusters measured back to back
// (docs/performance.md; bench/cluster.sh starts it with the real pomelo 2.2.7 cluster of
// bench/peers/chatofpomelo and with ours, pomelo-chat processes over nats-server).
//
//   node bench/cluster.js --cluster NAME=CMD [--cluster NAME=CMD ...] [options]
//   node bench/cluster.js --gate HOST:PORT [--pgid N] [--connectors 3] [--chat-servers 3] ...
//
// With --cluster, for every round and every cluster (the order alternates from one round to the
// next), CMD is run by bash in a new session (its pid is the process group of the whole
// cluster), and must print one line `cluster-ready HOST:PORT [connectors=N] [chat=N]` (the
// gate) on its stdout once every server has started; the cluster is stopped after its
// measurements by SIGTERM, then SIGKILL, to that process group. Server CPU time is the
// utime+stime (/proc/<pid>/stat) of every process of that group, summed. With --gate the
// cluster is already running (and --pgid, when given, is the group whose CPU is counted).
//
// The client is a Pomelo client made of the pinned npm pomelo-protocol 0.1.6 (tests/peers'
// node_modules, also used by bench/codec.js and bench/fanout.js), over raw TCP (default) or, with
// --transport ws, the pinned `ws` 8.23.0: handshake, ACK, heartbeats as the JS client sends them
// (one, `heartbeat` seconds after each one from the server), requests with the route
// dictionary's codes, onChat bodies decoded from pomelo-protobuf's wire format (checked once per
// run against pomelo-protobuf 0.4.0 itself).
//
// Users are spread evenly over the connectors by asking the gate (queryEntry, crc32 of the uid)
// and keeping the names that land where needed; rooms are chosen by the crc32 of their name
// (npm crc@0.2.0 semantics, as the chat route does) so that every chat server is used.
//
// Measurements, per cluster and round:
//   latency     open loop: chat.chatHandler.send at --rate requests/s for --latency-s seconds
//               (after --warmup-s), round robin over --lat-users users, each alone in its room
//               (target "*": one onChat back to the sender); request -> response p50/p99.
//   throughput  closed loop: --window requests in flight over the same users for
//               --throughput-s seconds; responses/s, and server CPU per request.
//   fanout      --fanout-users users in one room (spread over the connectors), --fanout-window
//               broadcasts in flight (each sender in turn sends to "*"; a broadcast is done when
//               every member has its onChat); pushes delivered/s and server CPU seconds per
//               million pushes delivered, broadcast send -> last delivery p50/p99.
// Every phase also gives the driver's own CPU (a core's fraction: near 1.0 the driver, not the
// servers, is what limited the figure) and checks correctness: every response is {}, every
// onChat carries "<sender>#<seq>" and reaches every member it should exactly once (duplicates,
// unknown and missing ones are counted; any of them fails the run with exit status 1).
//
// Before the phases, --warm-load-s seconds of the throughput load warm the servers up (node's
// JIT: a fresh pomelo process is several times slower for its first thousand requests); each
// phase then has --warmup-s seconds of its own load before its measured window.
// Options: --rounds N (3), --transport tcp|ws, --rate 200, --latency-s 10, --warmup-s 2,
// --lat-users 30, --window 32, --throughput-s 5, --fanout-users 60, --fanout-window 8,
// --fanout-s 5, --phases latency,throughput,fanout, --ready-timeout-s 90, --warm-load-s 3,
// --ratio-of NAME (the ratio columns are NAME / each other cluster; default: the second cluster
// over the first), --json FILE (all the figures), --quiet.
// Exit status: 0 done and correct, 1 a correctness failure or a cluster that did not work,
// 2 usage.
'use strict';

const childProcess = require('child_process');
const fs = require('fs');
const net = require('net');
const path = require('path');

const PEERS = path.join(__dirname, '..', 'tests', 'peers', 'node_modules');
let protocol;
try {
  protocol = require(path.join(PEERS, 'pomelo-protocol'));
} catch (e) {
  console.error('cluster.js: run `npm ci` in tests/peers first (' + e.message + ')');
  process.exit(2);
}
const { Package, Message } = protocol;
const Protocol = protocol; // strencode, strdecode

// ------------------------------------------------------------------------------------------
// Options
// ------------------------------------------------------------------------------------------
const opts = {
  clusters: [],
  gate: null,
  pgid: 0,
  connectors: 3,
  chatServers: 3,
  rounds: 3,
  transport: 'tcp',
  rate: 200,
  latencyS: 10,
  warmupS: 2,
  latUsers: 30,
  window: 32,
  throughputS: 5,
  fanoutUsers: 60,
  fanoutWindow: 8,
  fanoutS: 5,
  phases: ['latency', 'throughput', 'fanout'],
  readyTimeoutS: 90,
  warmLoadS: 3,
  ratioOf: null,
  json: null,
  quiet: false,
};

function usage(msg) {
  if (msg) {
    console.error('cluster.js: ' + msg);
  }
  console.error('usage: node bench/cluster.js --cluster NAME=CMD [...] | --gate HOST:PORT ' +
    '[--pgid N] [options] (see the header of bench/cluster.js)');
  process.exit(2);
}

(function parseArgs(argv) {
  const num = (v, name) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) {
      usage(name + ' needs a number');
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--quiet') {
      opts.quiet = true;
      continue;
    }
    if (v === undefined) {
      usage(a + ' needs a value');
    }
    i++;
    switch (a) {
      case '--cluster': {
        const eq = v.indexOf('=');
        if (eq <= 0) {
          usage('--cluster NAME=CMD');
        }
        opts.clusters.push({ name: v.slice(0, eq), cmd: v.slice(eq + 1) });
        break;
      }
      case '--gate': opts.gate = v; break;
      case '--pgid': opts.pgid = num(v, a); break;
      case '--connectors': opts.connectors = num(v, a); break;
      case '--chat-servers': opts.chatServers = num(v, a); break;
      case '--rounds': opts.rounds = num(v, a); break;
      case '--transport':
        if (v !== 'tcp' && v !== 'ws') {
          usage('--transport tcp|ws');
        }
        opts.transport = v;
        break;
      case '--rate': opts.rate = num(v, a); break;
      case '--latency-s': opts.latencyS = num(v, a); break;
      case '--warmup-s': opts.warmupS = num(v, a); break;
      case '--lat-users': opts.latUsers = num(v, a); break;
      case '--window': opts.window = num(v, a); break;
      case '--throughput-s': opts.throughputS = num(v, a); break;
      case '--fanout-users': opts.fanoutUsers = num(v, a); break;
      case '--fanout-window': opts.fanoutWindow = num(v, a); break;
      case '--fanout-s': opts.fanoutS = num(v, a); break;
      case '--phases': opts.phases = v.split(',').filter(Boolean); break;
      case '--ready-timeout-s': opts.readyTimeoutS = num(v, a); break;
      case '--warm-load-s': opts.warmLoadS = num(v, a); break;
      case '--ratio-of': opts.ratioOf = v; break;
      case '--json': opts.json = v; break;
      default: usage('unknown option ' + a);
    }
  }
  if (opts.clusters.length === 0 && !opts.gate) {
    usage('give --cluster or --gate');
  }
  if (opts.clusters.length && opts.gate) {
    usage('--cluster and --gate are exclusive');
  }
  for (const p of opts.phases) {
    if (!['latency', 'throughput', 'fanout'].includes(p)) {
      usage('unknown phase ' + p);
    }
  }
})(process.argv.slice(2));

function log(...args) {
  if (!opts.quiet) {
    console.log(...args);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => performance.now();

// ------------------------------------------------------------------------------------------
// crc32 as npm crc@0.2.0 computes it: standard CRC-32 over the low byte of each UTF-16 code
// unit, returned as a signed 32-bit integer.
// ------------------------------------------------------------------------------------------
const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) {
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    }
    t[n] = c;
  }
  return t;
})();

function crc32(str) {
  let crc = -1;
  for (let i = 0; i < str.length; i++) {
    crc = (crc >>> 8) ^ CRC_TABLE[(crc ^ str.charCodeAt(i)) & 0xff];
  }
  return (crc ^ -1) | 0;
}
const pick = (key, n) => Math.abs(crc32(key)) % n;

// ------------------------------------------------------------------------------------------
// onChat body: pomelo-protobuf's encoding of {msg:1, from:2, target:3}, all strings (fields of
// wire type 2 with a varint length). Anything else is an error.
// ------------------------------------------------------------------------------------------
function decodeOnChat(buf) {
  const out = {};
  let off = 0;
  while (off < buf.length) {
    const key = buf[off++];
    let len = 0;
    let shift = 0;
    let b;
    do {
      b = buf[off++];
      len += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    const s = buf.toString('utf8', off, off + len);
    off += len;
    if (key === 0x0a) {
      out.msg = s;
    } else if (key === 0x12) {
      out.from = s;
    } else if (key === 0x1a) {
      out.target = s;
    } else {
      throw new Error('onChat: unexpected key ' + key);
    }
  }
  if (off !== buf.length) {
    throw new Error('onChat: truncated body');
  }
  return out;
}

let protobufChecked = false;
function checkOnChatDecoder(serverProtos, body, mine) {
  if (protobufChecked) {
    return;
  }
  protobufChecked = true;
  const pb = require(path.join(PEERS, 'pomelo-protobuf'));
  pb.init({ decoderProtos: serverProtos, encoderProtos: {} });
  const theirs = pb.decode('onChat', body);
  if (JSON.stringify(theirs) !== JSON.stringify(mine)) {
    throw new Error('onChat decoded differently by pomelo-protobuf: ' + JSON.stringify(theirs) +
      ' vs ' + JSON.stringify(mine));
  }
}

// The message layer of a DATA package (spec 2.1), decoded without copying the body (the
// driver's hot path; pomelo-protocol's Message.decode copies it into a new buffer).
function decodeMessage(buf) {
  const flag = buf[0];
  const type = (flag >> 1) & 7;
  let off = 1;
  let id = 0;
  let route = null;
  if (type === Message.TYPE_REQUEST || type === Message.TYPE_RESPONSE) {
    let shift = 0;
    let b;
    do {
      b = buf[off++];
      id += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
  }
  if (type !== Message.TYPE_RESPONSE) {
    if (flag & 1) {
      route = (buf[off] << 8) | buf[off + 1];
      off += 2;
    } else {
      const len = buf[off++];
      route = buf.toString('utf8', off, off + len);
      off += len;
    }
  }
  return { id, type, route, body: buf.subarray(off) };
}

// ------------------------------------------------------------------------------------------
// A Pomelo client on raw TCP or WebSocket.
// ------------------------------------------------------------------------------------------
const HANDSHAKE = Package.encode(Package.TYPE_HANDSHAKE, Protocol.strencode(JSON.stringify({
  sys: { type: 'js-websocket', version: '0.0.1', rsa: {} },
  user: {},
})));
const ACK = Package.encode(Package.TYPE_HANDSHAKE_ACK);
const HEARTBEAT = Package.encode(Package.TYPE_HEARTBEAT);

const stats = { errors: [], probing: false }; // correctness failures of the current run
function fail(what) {
  if (stats.errors.length < 20 && !stats.probing) {
    console.error('  ERROR: ' + what);
  }
  stats.errors.push(what);
}

const liveClients = new Set(); // every client not yet closed (closeClients closes them all)

function closeClients() {
  for (const c of liveClients) {
    c.close();
  }
}

class Client {
  constructor(host, port, name) {
    liveClients.add(this);
    this.host = host;
    this.port = port;
    this.name = name;
    this.nextId = 1;
    this.pending = new Map();
    this.routeToCode = {};
    this.codeToRoute = {};
    this.serverProtos = {};
    this.heartbeat = 0;
    this.hbTimer = null;
    this.closed = false;
    this.onPush = null; // (route, body) for pushes: body an object
    this.chunks = [];
    this.have = 0;
    this.checked = 0;
  }

  connect(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.close();
        reject(new Error('connect timeout to ' + this.host + ':' + this.port));
      }, timeoutMs);
      this.onHandshake = (err) => {
        clearTimeout(timer);
        if (err) {
          this.close();
          reject(err);
        } else {
          resolve(this);
        }
      };
      const onErr = (e) => {
        if (this.onHandshake) {
          this.onHandshake(e);
          this.onHandshake = null;
        } else if (!this.closed) {
          fail(this.name + ': connection error ' + e.message);
        }
      };
      if (opts.transport === 'ws') {
        const WebSocket = require(path.join(PEERS, 'ws'));
        this.ws = new WebSocket('ws://' + this.host + ':' + this.port, { perMessageDeflate: false });
        this.ws.binaryType = 'nodebuffer';
        this.ws.on('open', () => this.ws.send(HANDSHAKE));
        this.ws.on('message', (data) => this.feed(data));
        this.ws.on('error', onErr);
        this.ws.on('close', () => this.onClose());
      } else {
        this.sock = net.connect(this.port, this.host, () => this.sock.write(HANDSHAKE));
        this.sock.setNoDelay(true);
        this.sock.on('data', (data) => this.feed(data));
        this.sock.on('error', onErr);
        this.sock.on('close', () => this.onClose());
      }
    });
  }

  send(buf) {
    if (this.closed) {
      return;
    }
    if (this.ws) {
      this.ws.send(buf);
    } else {
      this.sock.write(buf);
    }
  }

  onClose() {
    const wasClosed = this.closed;
    this.closed = true;
    liveClients.delete(this);
    clearTimeout(this.hbTimer);
    if (this.onHandshake) {
      this.onHandshake(new Error('closed during handshake by ' + this.host + ':' + this.port));
      this.onHandshake = null;
    } else if (!wasClosed) {
      fail(this.name + ': closed by the server');
    }
  }

  close() {
    liveClients.delete(this);
    if (this.closed) {
      return;
    }
    this.closed = true;
    clearTimeout(this.hbTimer);
    if (this.ws) {
      this.ws.terminate();
    } else if (this.sock) {
      this.sock.destroy();
    }
  }

  // Stream of packages (raw TCP) or whole packages (one per WebSocket message): cut on the
  // 4-byte headers either way.
  feed(data) {
    let buf = data;
    if (this.have) {
      this.chunks.push(data);
      buf = Buffer.concat(this.chunks, this.have + data.length);
      this.chunks = [];
      this.have = 0;
    }
    let off = 0;
    while (buf.length - off >= 4) {
      const len = (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3];
      if (buf.length - off - 4 < len) {
        break;
      }
      this.onPackage(buf[off], buf.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    if (off < buf.length) {
      const rest = buf.subarray(off);
      this.chunks.push(rest);
      this.have = rest.length;
    }
  }

  onPackage(type, body) {
    if (type === Package.TYPE_DATA) {
      const m = decodeMessage(body);
      if (this.checked < 20) {
        // The first messages of every connection are also decoded by pomelo-protocol itself.
        this.checked++;
        const r = Message.decode(body);
        if (r.id !== m.id || r.type !== m.type || r.route !== m.route ||
            Buffer.compare(Buffer.from(r.body), m.body) !== 0) {
          fail(this.name + ': message decoded differently by pomelo-protocol');
        }
      }
      this.onMessage(m);
    } else if (type === Package.TYPE_HEARTBEAT) {
      if (this.heartbeat && !this.hbTimer && !this.closed) {
        this.hbTimer = setTimeout(() => {
          this.hbTimer = null;
          this.send(HEARTBEAT);
        }, this.heartbeat * 1000);
      }
    } else if (type === Package.TYPE_HANDSHAKE) {
      let res;
      try {
        res = JSON.parse(Protocol.strdecode(body));
      } catch (e) {
        res = null;
      }
      const cb = this.onHandshake;
      this.onHandshake = null;
      if (!res || res.code !== 200) {
        cb(new Error('handshake refused: ' + (body ? Protocol.strdecode(body) : '')));
        return;
      }
      const sys = res.sys || {};
      this.heartbeat = sys.heartbeat || 0;
      if (sys.dict) {
        this.routeToCode = sys.dict;
        for (const r in sys.dict) {
          this.codeToRoute[sys.dict[r]] = r;
        }
      }
      if (sys.protos && sys.protos.server) {
        this.serverProtos = sys.protos.server;
      }
      this.send(ACK);
      cb(null);
    } else if (type === Package.TYPE_KICK) {
      fail(this.name + ': kicked: ' + (body ? Protocol.strdecode(body) : ''));
    }
  }

  onMessage(m) {
    if (m.type === Message.TYPE_RESPONSE) {
      const cb = this.pending.get(m.id);
      if (!cb) {
        fail(this.name + ': response to unknown request ' + m.id);
        return;
      }
      this.pending.delete(m.id);
      let body;
      try {
        body = m.body.length ? JSON.parse(m.body.toString('utf8')) : {};
      } catch (e) {
        fail(this.name + ': response not JSON');
        body = null;
      }
      cb(body);
    } else if (m.type === Message.TYPE_PUSH) {
      const route = typeof m.route === 'number' ? this.codeToRoute[m.route] : m.route;
      let body;
      try {
        if (this.serverProtos[route]) {
          body = decodeOnChat(m.body);
          checkOnChatDecoder(this.serverProtos, m.body, body);
        } else {
          body = JSON.parse(m.body.toString('utf8'));
        }
      } catch (e) {
        fail(this.name + ': push ' + route + ': ' + e.message);
        return;
      }
      if (this.onPush) {
        this.onPush(route, body);
      }
    }
  }

  request(route, obj, cb) {
    const id = this.nextId++;
    this.pending.set(id, cb);
    const code = this.routeToCode[route];
    const body = Buffer.from(JSON.stringify(obj), 'utf8');
    const msg = code ? Message.encode(id, Message.TYPE_REQUEST, 1, code, body)
      : Message.encode(id, Message.TYPE_REQUEST, 0, route, body);
    this.send(Package.encode(Package.TYPE_DATA, msg));
  }

  call(route, obj, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(this.name + ': ' + route + ' timed out')),
        timeoutMs);
      this.request(route, obj, (body) => {
        clearTimeout(t);
        resolve(body);
      });
    });
  }
}

// Runs fn over items with at most `limit` at a time.
async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

// ------------------------------------------------------------------------------------------
// Users: gate, connectors, rooms
// ------------------------------------------------------------------------------------------
// n names with prefix, spread evenly over the connectors the gate hands out, by asking it
// (one gate connection, many queries). Returns [{name, host, port, conn}] with conn the
// connector's index (0..connectors-1, by port).
async function makeUsers(gate, prefix, n, nConnectors) {
  const g = await new Client(gate.host, gate.port, 'gate').connect();
  try {
    const buckets = new Map();
    const users = [];
    const quota = Math.ceil(n / nConnectors);
    let k = 0;
    while (users.length < n) {
      if (k > n * 20 + 200) {
        throw new Error('the gate did not spread users over ' + nConnectors + ' connectors ' +
          '(saw ' + JSON.stringify([...buckets.keys()]) + ')');
      }
      const names = Array.from({ length: 32 }, () => prefix + k++);
      const answers = await Promise.all(names.map((uid) => g.call('gate.gateHandler.queryEntry',
        { uid })));
      for (let i = 0; i < names.length && users.length < n; i++) {
        const a = answers[i];
        if (!a || a.code !== 200) {
          throw new Error('queryEntry answered ' + JSON.stringify(a));
        }
        const key = a.host + ':' + a.port;
        if (!buckets.has(key)) {
          buckets.set(key, 0);
        }
        if (buckets.size > nConnectors) {
          throw new Error('the gate named more than ' + nConnectors + ' connectors: ' +
            JSON.stringify([...buckets.keys()]));
        }
        if (buckets.get(key) < quota) {
          buckets.set(key, buckets.get(key) + 1);
          users.push({ name: names[i], host: a.host, port: a.port });
        }
      }
      if (buckets.size < nConnectors && k > 64) {
        throw new Error('the gate named only ' + buckets.size + ' connectors');
      }
    }
    const ports = [...new Set(users.map((u) => u.port))].sort((a, b) => a - b);
    for (const u of users) {
      u.conn = ports.indexOf(u.port);
    }
    return users;
  } finally {
    g.close();
  }
}

// A room name whose chat server index (crc32 % nChat) is `index`.
function roomFor(prefix, index, nChat, used) {
  for (let k = 0; ; k++) {
    const rid = prefix + k;
    if (!used.has(rid) && pick(rid, nChat) === index) {
      used.add(rid);
      return rid;
    }
  }
}

// Connects every user to its connector and enters its room; checks the answer.
async function enterAll(users) {
  await pool(users, 16, async (u) => {
    u.client = await new Client(u.host, u.port, u.name).connect();
    const res = await u.client.call('connector.entryHandler.enter', { username: u.name,
      rid: u.rid });
    if (!res || !Array.isArray(res.users) || !res.users.includes(u.name)) {
      throw new Error(u.name + ': enter answered ' + JSON.stringify(res));
    }
  });
}

function closeAll(users) {
  for (const u of users) {
    if (u.client) {
      u.client.close();
    }
  }
}

// ------------------------------------------------------------------------------------------
// CPU accounting
// ------------------------------------------------------------------------------------------
const CLK_TCK = (() => {
  try {
    return Number(childProcess.execSync('getconf CLK_TCK').toString().trim()) || 100;
  } catch (e) {
    return 100;
  }
})();

// {pid: cpu seconds} of every process in the process group.
function groupCpu(pgid) {
  const out = {};
  if (!pgid) {
    return out;
  }
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) {
      continue;
    }
    let s;
    try {
      s = fs.readFileSync('/proc/' + d + '/stat', 'latin1');
    } catch (e) {
      continue;
    }
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    if (Number(f[2]) === pgid) {
      out[d] = { cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK, name: procName(d, s) };
    }
  }
  return out;
}

// A process's server id (pomelo's `id=...` argument, pomelo-chat's `--id ...`), else its name.
const procNames = new Map();
function procName(pid, stat) {
  if (!procNames.has(pid)) {
    let name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    try {
      const argv = fs.readFileSync('/proc/' + pid + '/cmdline', 'latin1').split('\0');
      const i = argv.indexOf('--id');
      const a = argv.find((x) => x.startsWith('id='));
      if (i >= 0 && argv[i + 1]) {
        name = argv[i + 1];
      } else if (a) {
        name = a.slice(3);
      }
    } catch (e) {
      // gone
    }
    procNames.set(pid, name);
  }
  return procNames.get(pid);
}

function cpuSnapshot(pgid) {
  const u = process.cpuUsage();
  return { t: now(), group: groupCpu(pgid), driver: (u.user + u.system) / 1e6 };
}

// Server CPU seconds between two snapshots (processes present in both), and the driver's.
function cpuDelta(a, b) {
  let server = 0;
  let procs = 0;
  let top = 0;
  let topName = '-';
  for (const pid in b.group) {
    if (a.group[pid]) {
      const d = b.group[pid].cpu - a.group[pid].cpu;
      server += d;
      procs++;
      if (d > top) {
        top = d;
        topName = b.group[pid].name;
      }
    }
  }
  const wall = (b.t - a.t) / 1000;
  return { server, procs, wall, driver: b.driver - a.driver, serverCores: server / wall,
    driverCores: (b.driver - a.driver) / wall, topCores: top / wall, topName };
}

function percentile(sorted, p) {
  if (sorted.length === 0) {
    return NaN;
  }
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

// ------------------------------------------------------------------------------------------
// Phases
// ------------------------------------------------------------------------------------------
// Users each alone in a room, rooms spread over the chat servers, for latency and throughput.
// Each request's onChat comes back to the sender only: expected[seq] is checked off.
function setupSoloChat(users) {
  for (const u of users) {
    u.seq = 0;
    u.expect = new Set();
    u.client.onPush = (route, body) => {
      if (route !== 'onChat') {
        fail(u.name + ': unexpected push ' + route);
        return;
      }
      const hash = body.msg.indexOf('#');
      const who = body.msg.slice(0, hash);
      const seq = Number(body.msg.slice(hash + 1));
      if (who !== u.name || body.from !== u.name || body.target !== '*' || !u.expect.has(seq)) {
        fail(u.name + ': onChat not expected (duplicate or foreign): ' + JSON.stringify(body));
        return;
      }
      u.expect.delete(seq);
      u.pushes++;
    };
    u.pushes = 0;
  }
}

function sendSolo(u, cb) {
  const seq = ++u.seq;
  u.expect.add(seq);
  const t0 = now();
  u.client.request('chat.chatHandler.send', { rid: u.rid, content: u.name + '#' + seq,
    from: u.name, target: '*' }, (body) => {
    if (!body || Object.keys(body).length !== 0) {
      fail(u.name + ': send answered ' + JSON.stringify(body));
    }
    cb(now() - t0, t0);
  });
}

async function drainSolo(users, ms = 5000) {
  const end = now() + ms;
  while (now() < end) {
    if (users.every((u) => u.client.pending.size === 0 && u.expect.size === 0)) {
      return;
    }
    await sleep(20);
  }
  let missingResp = 0;
  let missingPush = 0;
  for (const u of users) {
    missingResp += u.client.pending.size;
    missingPush += u.expect.size;
  }
  fail('after ' + ms + ' ms: ' + missingResp + ' responses and ' + missingPush +
    ' onChat pushes missing');
}

async function phaseLatency(users, pgid) {
  const rate = opts.rate;
  const warm = opts.warmupS * 1000;
  const total = warm + opts.latencyS * 1000;
  const lat = [];
  let sent = 0;
  const t0 = now();
  let snapA = null;
  let snapB = null;
  await new Promise((resolve) => {
    function tick() {
      const t = now() - t0;
      if (!snapA && t >= warm) {
        snapA = cpuSnapshot(pgid);
      }
      if (t >= total) {
        snapB = cpuSnapshot(pgid);
        resolve();
        return;
      }
      const due = Math.floor((t * rate) / 1000);
      while (sent < due) {
        const u = users[sent % users.length];
        sent++;
        sendSolo(u, (ms, tsent) => {
          if (tsent - t0 >= warm) {
            lat.push(ms);
          }
        });
      }
      setTimeout(tick, 1);
    }
    tick();
  });
  await drainSolo(users);
  lat.sort((a, b) => a - b);
  const cpu = cpuDelta(snapA, snapB);
  return { n: lat.length, p50: percentile(lat, 50), p99: percentile(lat, 99),
    max: lat[lat.length - 1], serverCores: cpu.serverCores, driverCores: cpu.driverCores,
    topCores: cpu.topCores, topName: cpu.topName };
}

async function phaseThroughput(users, pgid, seconds = opts.throughputS, warmS = opts.warmupS) {
  const warm = warmS * 1000;
  const total = warm + seconds * 1000;
  let counted = 0;
  let running = true;
  let snapA = null;
  let snapB = null;
  const t0 = now();
  const lat = [];
  function loop(u) {
    sendSolo(u, (ms, tsent) => {
      const t = now() - t0;
      if (snapA && !snapB) {
        counted++;
        if (tsent - t0 >= warm) {
          lat.push(ms);
        }
      }
      if (running && t < total) {
        loop(u);
      }
    });
  }
  for (let i = 0; i < opts.window; i++) {
    loop(users[i % users.length]);
  }
  await sleep(warm);
  snapA = cpuSnapshot(pgid);
  await sleep(total - warm);
  snapB = cpuSnapshot(pgid);
  running = false;
  await drainSolo(users);
  const cpu = cpuDelta(snapA, snapB);
  lat.sort((a, b) => a - b);
  return { rps: counted / cpu.wall, n: counted, p50: percentile(lat, 50),
    p99: percentile(lat, 99), serverCores: cpu.serverCores, driverCores: cpu.driverCores,
    serverUsPerReq: (cpu.server / counted) * 1e6, topCores: cpu.topCores, topName: cpu.topName };
}

async function phaseFanout(users, pgid) {
  const n = users.length;
  const index = new Map(users.map((u, i) => [u.name, i]));
  const inflight = new Map(); // "<name>#<seq>" -> {t, left, got: Uint8Array}
  let delivered = 0;
  let deliveredIn = 0;
  let measuring = false;
  const lat = [];
  let running = true;
  let nextSender = 0;
  let broadcasts = 0;
  let responses = 0;
  users.forEach((u, i) => {
    u.seq = 0;
    u.client.onPush = (route, body) => {
      if (route !== 'onChat') {
        if (route !== 'onAdd' && route !== 'onLeave') {
          fail(u.name + ': unexpected push ' + route);
        }
        return;
      }
      const b = inflight.get(body.msg);
      if (!b) {
        fail(u.name + ': onChat not expected (duplicate or unknown): ' + body.msg);
        return;
      }
      if (b.got[i]) {
        fail(u.name + ': onChat twice: ' + body.msg);
        return;
      }
      if (body.from !== b.from || body.target !== '*') {
        fail(u.name + ': onChat with wrong fields: ' + JSON.stringify(body));
      }
      b.got[i] = 1;
      delivered++;
      if (measuring) {
        deliveredIn++;
      }
      if (--b.left === 0) {
        inflight.delete(body.msg);
        if (measuring) {
          lat.push(now() - b.t);
        }
        if (running) {
          launch();
        }
      }
    };
  });
  function launch() {
    const u = users[nextSender];
    nextSender = (nextSender + 1) % n;
    const content = u.name + '#' + ++u.seq;
    inflight.set(content, { t: now(), left: n, got: new Uint8Array(n), from: u.name });
    broadcasts++;
    u.client.request('chat.chatHandler.send', { rid: u.rid, content, from: u.name,
      target: '*' }, (body) => {
      responses++;
      if (!body || Object.keys(body).length !== 0) {
        fail(u.name + ': send answered ' + JSON.stringify(body));
      }
    });
  }
  for (let i = 0; i < opts.fanoutWindow; i++) {
    launch();
  }
  await sleep(opts.warmupS * 1000);
  const snapA = cpuSnapshot(pgid);
  measuring = true;
  await sleep(opts.fanoutS * 1000);
  measuring = false;
  const snapB = cpuSnapshot(pgid);
  running = false;
  const end = now() + 5000;
  while ((inflight.size || responses < broadcasts) && now() < end) {
    await sleep(20);
  }
  if (inflight.size || responses < broadcasts) {
    let missing = 0;
    for (const b of inflight.values()) {
      missing += b.left;
    }
    fail('fanout: ' + inflight.size + ' broadcasts incomplete (' + missing +
      ' deliveries missing), ' + (broadcasts - responses) + ' responses missing');
  }
  void index;
  const cpu = cpuDelta(snapA, snapB);
  lat.sort((a, b) => a - b);
  return { pushesPerS: deliveredIn / cpu.wall, delivered: deliveredIn, broadcasts,
    totalDelivered: delivered, p50: percentile(lat, 50), p99: percentile(lat, 99),
    serverCores: cpu.serverCores, driverCores: cpu.driverCores,
    cpuSPerM: (cpu.server / deliveredIn) * 1e6, procs: cpu.procs, topCores: cpu.topCores,
    topName: cpu.topName };
}

// ------------------------------------------------------------------------------------------
// One cluster run
// ------------------------------------------------------------------------------------------
let runNo = 0;

// Waits until the gate hands out every connector and every connector forwards to every chat
// server: one probe user per connector, in one room per chat server, sends and gets its onChat.
async function probe(gate, nConn, nChat, deadline) {
  let lastErr = null;
  let attempt = 0;
  stats.probing = true;
  while (now() < deadline) {
    attempt++;
    const prefix = 'probe' + runNo + '_' + attempt + '_';
    let users = [];
    try {
      users = await makeUsers(gate, prefix, nConn, nConn);
      const rooms = new Set();
      const all = [];
      for (const u of users) {
        for (let c = 0; c < nChat; c++) {
          all.push(Object.assign({}, u, { name: u.name + 'c' + c,
            rid: roomFor(prefix + 'r', c, nChat, rooms) }));
        }
      }
      users = all;
      await enterAll(users);
      setupSoloChat(users);
      const before = stats.errors.length;
      await Promise.all(users.map((u) => new Promise((resolve) => sendSolo(u, resolve))));
      await drainSolo(users, 3000);
      if (stats.errors.length !== before) {
        stats.errors.length = before;
        throw new Error('probe chat failed');
      }
      closeAll(users);
      stats.probing = false;
      return attempt;
    } catch (e) {
      lastErr = e;
      // Also the clients of this attempt still connecting (not yet in `users`).
      closeClients();
      await sleep(1000);
    }
  }
  stats.probing = false;
  throw new Error('cluster not working: ' + (lastErr && lastErr.message));
}

async function measure(gate, pgid, nConn, nChat) {
  runNo++;
  stats.errors = [];
  const res = { procs: Object.keys(groupCpu(pgid)).length };
  const t = now();
  res.probes = await probe(gate, nConn, nChat, now() + opts.readyTimeoutS * 1000);
  log('  ready after ' + ((now() - t) / 1000).toFixed(1) + ' s of probing, ' + res.procs +
    ' processes in the group');
  await sleep(1000);

  if (opts.phases.includes('latency') || opts.phases.includes('throughput')) {
    const prefix = 'l' + runNo + '_';
    const users = await makeUsers(gate, prefix, opts.latUsers, nConn);
    const rooms = new Set();
    const perConn = new Array(nConn).fill(0);
    for (const u of users) {
      u.rid = roomFor(prefix + 'room', perConn[u.conn]++ % nChat, nChat, rooms);
    }
    await enterAll(users);
    setupSoloChat(users);
    if (opts.warmLoadS > 0) {
      const w = await phaseThroughput(users, pgid, opts.warmLoadS, 0);
      log(`  warm-up: ${w.n} requests in ${opts.warmLoadS} s`);
    }
    await sleep(500);
    if (opts.phases.includes('latency')) {
      res.latency = await phaseLatency(users, pgid);
      const l = res.latency;
      log(`  latency: ${l.n} requests at ${opts.rate}/s: p50 ${l.p50.toFixed(3)} ms, ` +
        `p99 ${l.p99.toFixed(3)} ms, max ${l.max.toFixed(3)} ms; server ` +
        `${l.serverCores.toFixed(2)} cores, driver ${l.driverCores.toFixed(2)}`);
      await sleep(500);
    }
    if (opts.phases.includes('throughput')) {
      res.throughput = await phaseThroughput(users, pgid);
      const r = res.throughput;
      log(`  throughput: ${r.rps.toFixed(0)} req/s with ${opts.window} in flight (p50 ` +
        `${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms); server ${r.serverCores.toFixed(2)}` +
        ` cores (busiest ${r.topName} ${r.topCores.toFixed(2)}), ${r.serverUsPerReq.toFixed(0)}` +
        ` us CPU/request; driver ${r.driverCores.toFixed(2)} cores`);
    }
    closeAll(users);
    await sleep(1000);
  }

  if (opts.phases.includes('fanout')) {
    const prefix = 'f' + runNo + '_';
    const users = await makeUsers(gate, prefix, opts.fanoutUsers, nConn);
    for (const u of users) {
      u.rid = prefix + 'room';
    }
    // One at a time: each enter pushes onAdd to those already in.
    await pool(users, 1, async (u) => {
      await enterAll([u]);
      u.client.onPush = () => {};
    });
    await sleep(1000);
    res.fanout = await phaseFanout(users, pgid);
    const f = res.fanout;
    log(`  fanout: ${users.length} users, ${opts.fanoutWindow} broadcasts in flight: ` +
      `${f.pushesPerS.toFixed(0)} pushes/s, broadcast p50 ${f.p50.toFixed(2)} ms p99 ` +
      `${f.p99.toFixed(2)} ms; server ${f.serverCores.toFixed(2)} cores (busiest ${f.topName} ` +
      `${f.topCores.toFixed(2)}), ` +
      `${f.cpuSPerM.toFixed(1)} CPU s per million pushes; driver ${f.driverCores.toFixed(2)} cores`);
    closeAll(users);
    await sleep(500);
  }
  closeClients();
  res.errors = stats.errors.slice();
  return res;
}

// ------------------------------------------------------------------------------------------
// Cluster processes
// ------------------------------------------------------------------------------------------
const started = new Set(); // process groups still to kill

function killGroup(pgid, sig) {
  try {
    process.kill(-pgid, sig);
  } catch (e) {
    // gone
  }
}

process.on('exit', () => {
  for (const g of started) {
    killGroup(g, 'SIGKILL');
  }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    for (const g of started) {
      killGroup(g, 'SIGKILL');
    }
    process.exit(1);
  });
}

function startCluster(c) {
  return new Promise((resolve, reject) => {
    const child = childProcess.spawn('bash', ['-c', c.cmd], {
      detached: true,
      stdio: ['ignore', 'pipe', 'inherit'],
      env: Object.assign({}, process.env, { BENCH_DRIVER_PID: String(process.pid) }),
    });
    started.add(child.pid);
    let buf = '';
    let done = false;
    const timer = setTimeout(() => {
      if (!done) {
        done = true;
        reject(new Error(c.name + ': no cluster-ready line within ' + opts.readyTimeoutS + ' s'));
      }
    }, opts.readyTimeoutS * 1000);
    child.stdout.on('data', (d) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /^cluster-ready (\S+):(\d+)(.*)$/.exec(line);
        if (m && !done) {
          done = true;
          clearTimeout(timer);
          const conn = /connectors=(\d+)/.exec(m[3]);
          const chat = /chat=(\d+)/.exec(m[3]);
          resolve({ pgid: child.pid, host: m[1], port: Number(m[2]),
            connectors: conn ? Number(conn[1]) : opts.connectors,
            chat: chat ? Number(chat[1]) : opts.chatServers, child });
        } else if (!opts.quiet) {
          console.log('  [' + c.name + '] ' + line);
        }
      }
    });
    child.on('exit', (code) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        reject(new Error(c.name + ': start command exited with status ' + code));
      }
    });
  });
}

async function stopCluster(pgid) {
  killGroup(pgid, 'SIGTERM');
  const end = now() + 5000;
  while (now() < end && Object.keys(groupCpu(pgid)).length) {
    await sleep(100);
  }
  killGroup(pgid, 'SIGKILL');
  const end2 = now() + 3000;
  while (now() < end2 && Object.keys(groupCpu(pgid)).length) {
    await sleep(100);
  }
  started.delete(pgid);
}

// ------------------------------------------------------------------------------------------
// Summary
// ------------------------------------------------------------------------------------------
const SATURATED = 0.85; // driver cores from which the driver is taken as the limit
const CORES = require('os').cpus().length;

function median(v) {
  const s = v.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) {
    return NaN;
  }
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const METRICS = [
  ['latency', 'p50', 'latency p50 (ms)', 3, 'lower'],
  ['latency', 'p99', 'latency p99 (ms)', 3, 'lower'],
  ['latency', 'serverCores', 'latency: server CPU (cores)', 3, 'lower'],
  ['throughput', 'rps', 'throughput (req/s)', 0, 'higher'],
  ['throughput', 'p50', 'throughput: latency p50 (ms)', 2, 'lower'],
  ['throughput', 'serverUsPerReq', 'throughput: server CPU per request (us)', 0, 'lower'],
  ['throughput', 'serverCores', 'throughput: server CPU (cores)', 2, 'info'],
  ['throughput', 'topCores', 'throughput: busiest server process (cores)', 2, 'info'],
  ['throughput', 'driverCores', 'throughput: driver CPU (cores)', 2, 'info'],
  ['fanout', 'pushesPerS', 'fanout: pushes delivered/s', 0, 'higher'],
  ['fanout', 'cpuSPerM', 'fanout: server CPU s per 1M pushes', 2, 'lower'],
  ['fanout', 'p50', 'fanout: broadcast p50 (ms)', 2, 'lower'],
  ['fanout', 'p99', 'fanout: broadcast p99 (ms)', 2, 'lower'],
  ['fanout', 'serverCores', 'fanout: server CPU (cores)', 2, 'info'],
  ['fanout', 'topCores', 'fanout: busiest server process (cores)', 2, 'info'],
  ['fanout', 'driverCores', 'fanout: driver CPU (cores)', 2, 'info'],
];

function summary(results, names) {
  const rows = [];
  const ratios = [];
  const of = opts.ratioOf !== null ? names.indexOf(opts.ratioOf) : 1;
  if (of >= 0 && of < names.length) {
    names.forEach((n, i) => {
      if (i !== of) {
        ratios.push([of, i]);
      }
    });
  }
  for (const [phase, key, label, digits] of METRICS) {
    if (!opts.phases.includes(phase)) {
      continue;
    }
    const med = names.map((n) => median(results[n].map((r) => r[phase] && r[phase][key])));
    const per = names.map((n) => results[n].map((r) => (r[phase] ? r[phase][key] : NaN))
      .map((x) => (Number.isFinite(x) ? x.toFixed(digits) : '-')).join(' '));
    // (per-round values: one group per cluster, in the column order, separated by " / ")
    const row = [label, ...med.map((x) => (Number.isFinite(x) ? x.toFixed(digits) : '-'))];
    for (const [a, b] of ratios) {
      const r = med[a] / med[b];
      row.push(Number.isFinite(r) ? r.toFixed(r < 10 ? 2 : 1) : '-');
    }
    row.push(per.join(' / '));
    rows.push(row);
  }
  const header = ['metric (median of ' + opts.rounds + ' rounds)', ...names];
  for (const [a, b] of ratios) {
    header.push(names[a] + '/' + names[b]);
  }
  header.push('rounds: ' + names.join(' / '));
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
  const line = (r) => '| ' + r.map((c, i) => (i === 0 || i === r.length - 1
    ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join(' | ') + ' |';
  console.log(line(header));
  console.log('|' + widths.map((w, i) => (i === 0 || i === widths.length - 1 ? ':' : '-') +
    '-'.repeat(w) + (i === 0 || i === widths.length - 1 ? '-' : ':')).join('|') + '|');
  for (const r of rows) {
    console.log(line(r));
  }
  // A driver near one full core (node runs the clients on one thread) is what limited the
  // closed-loop figures; the machine's cores are shared by the servers and the driver.
  for (const phase of ['latency', 'throughput', 'fanout']) {
    for (const n of names) {
      const d = median(results[n].map((r) => r[phase] && r[phase].driverCores));
      const sv = median(results[n].map((r) => r[phase] && r[phase].serverCores));
      if (d >= SATURATED) {
        console.log(`NOTE: ${n} ${phase}: the driver used ${d.toFixed(2)} of a core (its one ` +
          `thread saturated): the figure is the driver's limit, not the servers'`);
      } else if (d + sv >= 0.9 * CORES) {
        console.log(`NOTE: ${n} ${phase}: servers ${sv.toFixed(2)} + driver ${d.toFixed(2)} ` +
          `cores of ${CORES}: the machine was saturated`);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
async function main() {
  const results = {};
  let failed = false;
  const header = `transport ${opts.transport}; latency: ${opts.latUsers} users, ${opts.rate} ` +
    `req/s for ${opts.latencyS} s; throughput: ${opts.window} in flight for ` +
    `${opts.throughputS} s; fanout: ${opts.fanoutUsers} users in one room, ` +
    `${opts.fanoutWindow} broadcasts in flight for ${opts.fanoutS} s; warm-up ${opts.warmupS} s`;
  console.log('cluster.js: ' + header);
  if (opts.gate) {
    const [host, port] = opts.gate.split(':');
    results.cluster = [];
    for (let r = 0; r < opts.rounds; r++) {
      console.log('-- round ' + (r + 1));
      const res = await measure({ host, port: Number(port) }, opts.pgid, opts.connectors,
        opts.chatServers);
      results.cluster.push(res);
      failed = failed || res.errors.length > 0;
    }
    summary(results, ['cluster']);
  } else {
    const names = opts.clusters.map((c) => c.name);
    for (const n of names) {
      results[n] = [];
    }
    for (let r = 0; r < opts.rounds; r++) {
      const order = r % 2 ? opts.clusters.slice().reverse() : opts.clusters;
      for (const c of order) {
        console.log(`-- round ${r + 1} of ${opts.rounds}: ${c.name}`);
        let cl = null;
        try {
          cl = await startCluster(c);
          log(`  gate ${cl.host}:${cl.port}, ${cl.connectors} connectors, ${cl.chat} chat servers`);
          const res = await measure({ host: cl.host, port: cl.port }, cl.pgid, cl.connectors,
            cl.chat);
          if (res.errors.length) {
            console.log(`  ${res.errors.length} correctness errors`);
            failed = true;
          } else {
            log('  correctness: every response {} and every onChat delivered once');
          }
          results[c.name].push(res);
        } catch (e) {
          console.log('  FAILED: ' + e.message);
          failed = true;
          results[c.name].push({ errors: [e.message] });
        } finally {
          if (cl) {
            await stopCluster(cl.pgid);
          }
        }
      }
    }
    console.log();
    summary(results, names);
  }
  if (opts.json) {
    fs.writeFileSync(opts.json, JSON.stringify({ opts, results }, null, 1));
  }
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error('cluster.js: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
