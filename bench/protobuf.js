// The reference side of bench/protobuf.c: the same proto set and messages encoded and decoded by
// the npm pomelo-protobuf 0.4.0 (tests/peers/node_modules), as the real pomelo server does
// (its connector's protobuf component: protobuf.parse of config/serverProtos.json, then
// encode(route, msg) of every push and response with protos).
//
//   node bench/protobuf.js [--reps R] [--iters K]   (default: 21 runs; K = 10000 chat
//                                                    messages a run, K / 20 area messages)
//
// Cases per message:
//   enc_obj   protobuf.encode(route, obj) from a JS object (the real server's path: handlers
//             hand it objects);
//   enc_text  protobuf.encode(route, JSON.parse(text)), the C side's enc_text;
//   dec_obj   protobuf.decode(route, buf) to an object;
//   dec_text  JSON.stringify(protobuf.decode(route, buf)), the C side's dec_text (JSON text).
// Each run times K operations; it reports the wall time (process.hrtime) and the CPU time of the
// process (process.cpuUsage: user + system, all threads, so V8's GC helpers count) per
// operation. Runs of all cases alternate; each figure is the median of its runs. Before timing,
// each message is checked: JSON.stringify(decode(encode(JSON.parse(text)))) is its text. Lines
// starting with "@" are for bench/micro.sh, which checks that both sides had the same JSON text
// and made the same bytes.
'use strict';

const path = require('path');

let protobuf;
try {
  protobuf = require(path.join(__dirname, '..', 'tests', 'peers', 'node_modules', 'pomelo-protobuf'));
} catch (e) {
  console.log('bench/protobuf.js: skipped: pomelo-protobuf is not installed (npm ci in tests/peers)');
  process.exit(77);
}
// pomelo-protobuf 0.4.0 allocates with the deprecated `new Buffer(n)`.
process.noDeprecation = true;

// chatofpomelo's onChat, then onArea with its nested Player; Pos and Stats are global types.
// The same text as SERVER_PROTOS in bench/protobuf.c.
const SERVER_PROTOS = '{"onChat":{"required string msg":1,"required string from":2,' +
  '"required string target":3},' +
  '"onArea":{' +
  '"message Player":{"required uInt32 id":1,"required string name":2,' +
  '"required Pos pos":3,"optional sInt32 hp":4,"repeated uInt32 items":5},' +
  '"required uInt32 areaId":1,"required string name":2,"optional double time":3,' +
  '"required Pos center":4,"repeated uInt32 entities":5,"repeated Player players":6,' +
  '"repeated string tags":7,"optional Stats stats":8},' +
  '"message Pos":{"required double x":1,"required double y":2},' +
  '"message Stats":{"required uInt32 kills":1,"required uInt32 deaths":2,' +
  '"required double ratio":3}}';

const CHAT_TEXT = '{"msg":"hello everyone, see you at the castle gate at 10!","from":"alice",' +
  '"target":"*"}';

const AREA_ENTITIES = 100;
const AREA_PLAYERS = 12;

// The area message, built by the same loops as area_text() in bench/protobuf.c.
function areaText() {
  let s = '{"areaId":7021,"name":"Castle gate \u2014 north","time":1700000000.123,';
  s += '"center":{"x":512.5,"y":-128.25},"entities":[';
  for (let i = 0; i < AREA_ENTITIES; i++) {
    // 1- to 5-byte varints: a 32-bit hash shifted by 0, 8, 16 or 24 bits
    const v = (Math.imul(i + 1, 2654435761) >>> 0) >>> ((i % 4) * 8);
    s += (i ? ',' : '') + v;
  }
  s += '],"players":[';
  for (let i = 0; i < AREA_PLAYERS; i++) {
    const hp = i * 17 * (i % 2 ? -1 : 1);
    const x = (i * 1250 + 25) / 100;
    const y = (10000 - i * 375) / 100;
    s += (i ? ',' : '') + `{"id":${10000 + i * 37},"name":"player-${String(i).padStart(2, '0')}",` +
      `"pos":{"x":${x},"y":${y}},"hp":${hp},` +
      `"items":[${i + 1},${i * 3 + 1},${i * 300 + 1},${70000 + i}]}`;
  }
  s += '],"tags":["pvp","night","rain","event:harvest"],';
  s += '"stats":{"kills":1234,"deaths":763,"ratio":1.6180339887}}';
  return s;
}

function parseArgs() {
  const o = { reps: 21, iters: 10000 };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === '--reps') o.reps = parseInt(a[++i], 10);
    else if (a[i] === '--iters') o.iters = parseInt(a[++i], 10);
    else {
      console.error('usage: node bench/protobuf.js [--reps R] [--iters K]');
      process.exit(2);
    }
  }
  if (!(o.reps >= 1) || !(o.iters >= 20)) {
    console.error('bench/protobuf.js: bad --reps or --iters');
    process.exit(2);
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

// Times `iters` calls of body(); returns [wall ns, cpu ns] per call.
function timed(iters, body) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) sink += body();
  const t1 = process.hrtime.bigint();
  const c = process.cpuUsage(c0);
  return [Number(t1 - t0) / iters, (c.user + c.system) * 1e3 / iters];
}

const KINDS = ['enc_obj', 'enc_text', 'dec_obj', 'dec_text'];

function runs(c) {
  return {
    enc_obj: () => timed(c.iters, () => {
      const b = protobuf.encode(c.route, c.obj);
      return b.length + b[b.length - 1];
    }),
    enc_text: () => timed(c.iters, () => {
      const b = protobuf.encode(c.route, JSON.parse(c.text));
      return b.length + b[b.length - 1];
    }),
    dec_obj: () => timed(c.iters, () => {
      const o = protobuf.decode(c.route, c.bytes);
      return o === null ? 0 : 1;
    }),
    dec_text: () => timed(c.iters, () => JSON.stringify(protobuf.decode(c.route, c.bytes)).length),
  };
}

function main() {
  const o = parseArgs();
  const parsed = protobuf.parse(JSON.parse(SERVER_PROTOS));
  protobuf.init({ encoderProtos: parsed, decoderProtos: parsed });
  const cases = [
    { name: 'chat', route: 'onChat', text: CHAT_TEXT, iters: o.iters },
    { name: 'area', route: 'onArea', text: areaText(), iters: Math.floor(o.iters / 20) },
  ];
  for (const c of cases) {
    c.obj = JSON.parse(c.text);
    c.bytes = protobuf.encode(c.route, c.obj);
    if (!c.bytes) throw new Error(c.name + ': pomelo-protobuf refused to encode it');
    const back = JSON.stringify(protobuf.decode(c.route, c.bytes));
    if (back !== c.text) {
      throw new Error(c.name + ' does not decode back to its text\n  in:  ' + c.text + '\n  out: ' + back);
    }
    c.run = runs(c);
    c.wall = {};
    c.cpu = {};
    for (const k of KINDS) {
      c.wall[k] = [];
      c.cpu[k] = [];
    }
  }
  // Node's Buffer() constructor (pomelo-protobuf calls `new Buffer(n)` once or more per encode)
  // inspects the stack of its first 10000 callers for its deprecation warning; a long-running
  // server is past that: so are we.
  for (let i = 0; i < 12000; i++) protobuf.encode('onChat', cases[0].obj);
  for (const c of cases) for (const k of KINDS) c.run[k](); // warm-up (JIT)
  for (let r = 0; r < o.reps; r++) {
    for (const c of cases) {
      for (const k of KINDS) {
        const [w, u] = c.run[k]();
        c.wall[k].push(w);
        c.cpu[k].push(u);
      }
    }
  }
  console.log(`node ${process.version} pomelo-protobuf 0.4.0 reference (median of ${o.reps} runs ` +
    `of ${cases[0].iters} chat / ${cases[1].iters} area operations, cases interleaved)`);
  console.log('  enc_obj = protobuf.encode from an object; enc_text = JSON.parse + encode;');
  console.log('  dec_obj = protobuf.decode to an object; dec_text = decode + JSON.stringify');
  console.log('  wall ns/op (cpu ns/op)');
  console.log('  msg    json  bytes ' + KINDS.map((k) => k.padStart(20)).join(''));
  for (const c of cases) {
    const cells = KINDS.map((k) => {
      const w = median(c.wall[k]);
      const u = median(c.cpu[k]);
      return `${w.toFixed(1)} (${u.toFixed(1)})`.padStart(20);
    });
    const jl = Buffer.byteLength(c.text);
    console.log(`  ${c.name.padEnd(5)} ${String(jl).padStart(5)} ${String(c.bytes.length).padStart(6)} ` +
      cells.join(''));
    for (const k of KINDS) {
      console.log(`@ protobuf node ${k}.${c.name} ${c.bytes.length} ${median(c.wall[k]).toFixed(2)} ns/op`);
      console.log(`@ protobuf node cpu_${k}.${c.name} ${c.bytes.length} ${median(c.cpu[k]).toFixed(2)} ns/op`);
    }
    console.log(`@ protobuf node check.${c.name} ${c.bytes.length} ${fnv1a(c.bytes)} fnv1a`);
    console.log(`@ protobuf node input.${c.name} ${jl} ${fnv1a(Buffer.from(c.text))} fnv1a`);
  }
  if (sink === 0.5) console.log(''); // keeps the results alive
}

main();
