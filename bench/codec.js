// The reference side of bench/codec.c: the same messages encoded and decoded by the npm
// pomelo-protocol 0.1.6 (tests/peers/node_modules), as the real pomelo server and its clients do.
//
//   node bench/codec.js [--reps R] [--iters K]       (default: 21 runs of 20000 messages)
//
// Encode = Message.encode(id, type, 0, route, bodyBuffer) then Package.encode(TYPE_DATA, msg);
// decode = Package.decode(pkg) then Message.decode(pkg.body). The body is a Buffer on both
// sides (the JSON text is not stringified or parsed here, as the C side does not either). Runs of
// the six cases alternate; each figure is the median of its runs. Lines starting with "@" are
// for bench/micro.sh.
'use strict';

const path = require('path');

let protocol;
try {
  protocol = require(path.join(__dirname, '..', 'tests', 'peers', 'node_modules', 'pomelo-protocol'));
} catch (e) {
  console.log('bench/codec.js: skipped: pomelo-protocol is not installed (npm ci in tests/peers)');
  process.exit(77);
}
const { Package, Message } = protocol;

const REQ_ROUTE = 'chat.chatHandler.sendToChannel';
const REQ_BODY = '{"rid":"room-42","content":"hello everyone in the room!!!!"}';
const PUSH_BODY = '{"from":"u1024","target":"*",' +
  '"msg":"hello everyone in this room, see you at the castle gate at 10!"}';
const RESP_BODY = '{"code":200,"msg":{"uid":"u1024","room":"room-42","seq":90}}';
if (REQ_ROUTE.length !== 30 || REQ_BODY.length !== 60 || PUSH_BODY.length !== 100 ||
    RESP_BODY.length !== 60) {
  throw new Error('message sizes');
}

function parseArgs() {
  const o = { reps: 21, iters: 20000 };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === '--reps') o.reps = parseInt(a[++i], 10);
    else if (a[i] === '--iters') o.iters = parseInt(a[++i], 10);
    else {
      console.error('usage: node bench/codec.js [--reps R] [--iters K]');
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

function fnv1a(buf) {
  let h = 2166136261;
  for (let i = 0; i < buf.length; i++) h = Math.imul(h ^ buf[i], 16777619) >>> 0;
  return h >>> 0;
}

let sink = 0;

function encodeRun(c, iters) {
  const t0 = process.hrtime.bigint();
  let acc = 0;
  for (let i = 0; i < iters; i++) {
    const m = Message.encode(c.id, c.type, 0, c.route, c.body);
    const p = Package.encode(Package.TYPE_DATA, m);
    acc += p.length + p[p.length - 1];
  }
  const t1 = process.hrtime.bigint();
  sink += acc;
  return Number(t1 - t0) / iters;
}

function decodeRun(c, iters) {
  const t0 = process.hrtime.bigint();
  let acc = 0;
  for (let i = 0; i < iters; i++) {
    const p = Package.decode(c.pkg);
    const m = Message.decode(p.body);
    acc += m.body.length + (m.route ? m.route.length : 0) + m.id;
  }
  const t1 = process.hrtime.bigint();
  sink += acc;
  return Number(t1 - t0) / iters;
}

function main() {
  const o = parseArgs();
  const cases = [
    { name: 'request', id: 1234, type: Message.TYPE_REQUEST, route: REQ_ROUTE, body: Buffer.from(REQ_BODY) },
    { name: 'push', id: 0, type: Message.TYPE_PUSH, route: 'onChat', body: Buffer.from(PUSH_BODY) },
    { name: 'response', id: 1234, type: Message.TYPE_RESPONSE, route: null, body: Buffer.from(RESP_BODY) },
  ];
  // Node's Buffer() constructor (used by pomelo-protocol) inspects the stack of its first 10000
  // callers for its deprecation warning; a long-running server is past that: so are we.
  for (let i = 0; i < 12000; i++) Package.encode(Package.TYPE_DATA, Buffer.alloc(8));
  for (const c of cases) {
    c.pkg = Package.encode(Package.TYPE_DATA, Message.encode(c.id, c.type, 0, c.route, c.body));
    const back = Message.decode(Package.decode(c.pkg).body);
    if (back.type !== c.type || back.id !== c.id || !back.body.equals(c.body)) {
      throw new Error(c.name + ' does not decode back');
    }
    c.enc = [];
    c.dec = [];
    encodeRun(c, o.iters); // warm-up (JIT)
    decodeRun(c, o.iters);
  }
  for (let r = 0; r < o.reps; r++) {
    for (const c of cases) {
      c.enc.push(encodeRun(c, o.iters));
      c.dec.push(decodeRun(c, o.iters));
    }
  }
  console.log(`node ${process.version} pomelo-protocol codec reference (median of ${o.reps} runs ` +
    `of ${o.iters} messages, cases interleaved)`);
  console.log('  encode = Message.encode + Package.encode; decode = Package.decode + Message.decode');
  console.log('  message    bytes     enc ns   enc M/s     dec ns   dec M/s');
  for (const c of cases) {
    const e = median(c.enc);
    const d = median(c.dec);
    console.log(`  ${c.name.padEnd(9)} ${String(c.pkg.length).padStart(6)} ${e.toFixed(1).padStart(10)} ` +
      `${(1e3 / e).toFixed(2).padStart(9)} ${d.toFixed(1).padStart(10)} ${(1e3 / d).toFixed(2).padStart(9)}`);
    console.log(`@ codec node encode.${c.name} ${c.pkg.length} ${e.toFixed(2)} ns/msg`);
    console.log(`@ codec node decode.${c.name} ${c.pkg.length} ${d.toFixed(2)} ns/msg`);
    console.log(`@ codec node check.${c.name} ${c.pkg.length} ${fnv1a(c.pkg)} fnv1a`);
  }
  if (sink === 0.5) console.log(''); // keeps the results alive
}

main();
