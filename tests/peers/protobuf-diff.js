// Differential test of libpomelo's pomelo-protobuf codec against the real npm
// pomelo-protobuf@0.4.0: its server codec (require('pomelo-protobuf')) and its browser build
// (lib/client/protobuf.js, run as a page runs it), through the pbtool program.
//
//   node protobuf-diff.js PATH/TO/pbtool
//
// A seeded generator makes random proto descriptions (every scalar type, strings, nested and
// global messages, recursive globals, repeated fields of each kind, required/optional, tags up
// to 2^28-1, array-index names, keys the parser skips, duplicate tags) and random objects for
// them (UTF-8 text of 1- to 4-byte characters, edge numbers: 0, 2^31-1, -2^31, 2^32-1, up to
// 2^53 for uInt32, floats exactly representable, doubles, empty and filled arrays, unknown
// keys). Then, for every schema:
//   (e) libpomelo's parsed form and version (the handshake's "protos") equal node's parse() and
//       the real server's version formula, and a set made from that handshake value gives the
//       same text back;
// and for every object, on the side it belongs to:
//   (a) node's server encoder's bytes, decoded by libpomelo, give node's own decode of them;
//   (b) the browser encoder's bytes (varints with wire type 2, CESU-8 text), decoded by
//       libpomelo, give the same object;
//   (c) libpomelo's encoder gives exactly node's server encoder bytes, and node decodes them
//       to the same object;
//   (d) libpomelo's encoder with POMELO_PB_CESU8 gives bytes the browser decoder reads back as
//       the same object.
// Half of the schemas run the object checks on a set made from the handshake value.
//
// Environment: PROTOBUF_DIFF_SEED (32-bit integer), PROTOBUF_DIFF_SCHEMAS (default 400),
// PROTOBUF_DIFF_OBJECTS (objects per schema, default 12), PEER_TESTS_REQUIRED=1 to fail
// instead of skipping (exit 77) when node_modules is missing. Exit status: 0 no mismatch,
// 1 a mismatch, 77 skipped.
'use strict';

const childProcess = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const vm = require('vm');

const SKIP = 77;
const DEFAULT_SEED = 0x9b0f;

let pbNode;
try {
  pbNode = require('pomelo-protobuf');
} catch (e) {
  const how = 'node_modules is missing in ' + __dirname + ': run npm ci in tests/peers';
  if (process.env.PEER_TESTS_REQUIRED === '1') {
    console.error('protobuf-diff: FAIL: ' + how);
    process.exit(1);
  }
  console.log('protobuf-diff: SKIP: ' + how);
  process.exit(SKIP);
}
// pomelo-protobuf 0.4.0 calls the deprecated `new Buffer(n)`, and warns on every object its
// encoder refuses or finds empty: noise here.
process.noDeprecation = true;
console.warn = () => {};

const toolPath = process.argv[2] || process.env.PBTOOL;
if (!toolPath) {
  console.error('usage: node ' + path.basename(__filename) + ' PATH/TO/pbtool');
  process.exit(2);
}

function envInt(name, def) {
  const t = process.env[name];
  const v = t === undefined || t === '' ? def : Number(t);
  if (!Number.isInteger(v) || v < 0) {
    console.error('protobuf-diff: ' + name + ' must be a non-negative integer');
    process.exit(2);
  }
  return v;
}
const seed = envInt('PROTOBUF_DIFF_SEED', DEFAULT_SEED) >>> 0;
const nSchemas = envInt('PROTOBUF_DIFF_SCHEMAS', 400);
const nObjects = envInt('PROTOBUF_DIFF_OBJECTS', 12);

// The browser build, as a page loads it: its first lines need a `module` (the demo pages give
// one); everything hangs off module.exports.
function loadBrowserBuild() {
  const file = path.join(path.dirname(require.resolve('pomelo-protobuf/package.json')), 'lib',
                         'client', 'protobuf.js');
  const wrapped = '(function (module) {' + fs.readFileSync(file, 'utf8') + '\n})';
  const mod = { exports: {} };
  vm.runInThisContext(wrapped, { filename: file }).call({}, mod);
  if (typeof mod.exports.encoder !== 'object' || typeof mod.exports.decoder !== 'object') {
    throw new Error(file + ': not the browser build expected');
  }
  return mod.exports;
}
const pbBrowser = loadBrowserBuild();

// ---------------------------------------------------------------------------------------------
// Seeded PRNG: xoshiro128** seeded through a 32-bit mix, so a seed reproduces a run.

function makeRng(s) {
  const mix = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (z ^ (z >>> 14)) >>> 0;
  };
  let a = mix(), b = mix(), c = mix(), d = mix();
  return function () {
    const r = Math.imul(((Math.imul(b, 5) << 7) | (Math.imul(b, 5) >>> 25)), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = (d << 11) | (d >>> 21);
    return r;
  };
}
const rng = makeRng(seed);
const rand = (n) => Math.floor((rng() / 4294967296) * n);
const chance = (p) => rng() / 4294967296 < p;
const pick = (a) => a[rand(a.length)];
function shuffle(a) {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rand(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// Random proto descriptions

const SCALARS = ['uInt32', 'int32', 'sInt32', 'float', 'double', 'string'];
const RULES = ['required', 'optional', 'repeated'];
const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

function randName(used) {
  for (;;) {
    let n;
    if (chance(0.08)) {
      n = String(rand(40)); // an array index: JavaScript orders it first
    } else {
      n = '';
      const len = 1 + rand(3);
      for (let i = 0; i < len; i++) n += LETTERS[rand(26)];
    }
    if (!used.has(n)) {
      used.add(n);
      return n;
    }
  }
}

function randTag(usedTags) {
  if (usedTags.length && chance(0.05)) return pick(usedTags); // a duplicate: skipped
  const t = chance(0.05) ? 1 + rand(268435455) : 1 + rand(24);
  usedTags.push(t);
  return t;
}

// One message: fields of scalar types, of its own nested types, or of the side's global types.
// Message-typed fields are required only for nested types (globals may be recursive).
function randMessage(depth, globals) {
  const entries = [];
  const nested = [];
  const usedNested = new Set();
  if (depth < 3) {
    const k = rand(depth === 0 ? 3 : 2);
    for (let i = 0; i < k; i++) {
      const name = 'N' + randName(usedNested);
      nested.push(name);
      entries.push(['message ' + name, randMessage(depth + 1, globals)]);
    }
  }
  const usedNames = new Set();
  const usedTags = [];
  const nf = rand(9);
  for (let i = 0; i < nf; i++) {
    let type, rule = pick(RULES);
    const r = rng() / 4294967296;
    if (r < 0.7 || (nested.length === 0 && globals.length === 0)) {
      type = pick(SCALARS);
    } else if (nested.length && (r < 0.85 || globals.length === 0)) {
      type = pick(nested);
    } else {
      type = pick(globals);
      if (rule === 'required') rule = 'optional';
    }
    entries.push([rule + ' ' + type + ' ' + randName(usedNames), randTag(usedTags)]);
  }
  // keys the real parser skips
  if (chance(0.15)) entries.push([pick(['note', 'a b', 'required uInt32', 'packed uInt32 z',
                                        'optional string x y']), 1 + rand(5)]);
  if (chance(0.05)) entries.push(['message a b', {}]);
  const obj = {};
  for (const [k, v] of shuffle(entries)) obj[k] = v;
  return obj;
}

function randSide() {
  const side = {};
  const globals = [];
  const usedG = new Set();
  const ng = rand(3);
  for (let i = 0; i < ng; i++) globals.push('G' + randName(usedG));
  const keys = [];
  for (const g of globals) keys.push(['message ' + g, randMessage(1, globals)]);
  const usedR = new Set();
  const nr = rand(4) + (chance(0.9) ? 1 : 0);
  for (let i = 0; i < nr; i++) {
    const route = chance(0.1) ? String(rand(50)) : chance(0.5) ? 'area.h' + randName(usedR) +
      '.move' : 'on' + randName(usedR);
    keys.push([route, randMessage(0, globals)]);
  }
  for (const [k, v] of shuffle(keys)) side[k] = v;
  return side;
}

// ---------------------------------------------------------------------------------------------
// Random objects, from node's parsed form

const EDGE_U32 = [0, 1, 127, 128, 300, 16383, 16384, 2147483647, 2147483648, 4294967295];
const EDGE_S32 = [0, 1, -1, 63, -64, 64, -65, 2147483647, -2147483648];

function codePoint(w) {
  switch (w) {
    case 1: return 0x20 + rand(0x5f);
    case 2: return 0x80 + rand(0x780);
    case 3: {
      const cp = 0x800 + rand(0x10000 - 0x800 - 0x800);
      return cp >= 0xd800 ? cp + 0x800 : cp;
    }
    default: return 0x10000 + rand(0x100000);
  }
}

function randString() {
  let s = '';
  const n = rand(chance(0.1) ? 40 : 8);
  for (let i = 0; i < n; i++) s += String.fromCodePoint(codePoint(1 + rand(4)));
  return s;
}

function randScalar(type) {
  switch (type) {
    case 'uInt32':
      if (chance(0.5)) return pick(EDGE_U32);
      if (chance(0.1)) return Math.floor((rng() / 4294967296) * 2 ** 21) * 2 ** 32 + rng();
      return rng();
    case 'int32':
    case 'sInt32':
      if (chance(0.5)) return pick(EDGE_S32);
      if (chance(0.05)) return (chance(0.5) ? -1 : 1) * (rand(2 ** 20) * 2 ** 32 + rng());
      return rng() | 0;
    case 'float': {
      const v = pick([0, 1.5, -2.25, 3.4e38, -1e-40, 1e-45, 0.1, 16777217, 1e20]);
      return Math.fround(chance(0.5) ? v : (rng() / 4294967296 - 0.5) * 10 ** (rand(20) - 10));
    }
    case 'double':
      if (chance(0.3)) {
        return pick([0, 0.1, -1, 5e-324, 1.7976931348623157e308, 1e21, 123456789012, 2 ** 53]);
      }
      return (rng() / 4294967296 - 0.5) * 10 ** (rand(40) - 20);
    default:
      return randString();
  }
}

function resolve(msg, type, sideParsed) {
  return msg.__messages[type] || sideParsed['message ' + type];
}

function randObject(msg, sideParsed, depth) {
  const obj = {};
  const names = shuffle(Object.keys(msg).filter((k) => k !== '__messages' && k !== '__tags'));
  for (const name of names) {
    const f = msg[name];
    const sub = SCALARS.includes(f.type) ? null : resolve(msg, f.type, sideParsed);
    if (f.option !== 'required' && chance(0.3)) continue;
    if (sub && f.option !== 'required' && depth >= 4) continue;
    const one = () => (sub ? randObject(sub, sideParsed, depth + 1) : randScalar(f.type));
    if (f.option === 'repeated') {
      const n = rand(5);
      const a = [];
      for (let i = 0; i < n; i++) a.push(one());
      obj[name] = a;
    } else {
      obj[name] = one();
    }
  }
  if (chance(0.15)) obj.UnknownKey = chance(0.5) ? 5 : { x: [1] };
  // what libpomelo reads is the JSON text: give node the same values (-0 becomes 0)
  return JSON.parse(JSON.stringify(obj));
}

// ---------------------------------------------------------------------------------------------
// The run

const hex = (b) => Buffer.from(b || []).toString('hex');
const nodeVersion = (ps, pc) =>
  crypto.createHash('md5').update(JSON.stringify(pc) + JSON.stringify(ps)).digest('base64');

const lines = [];
const checks = []; // one per line: (answer) => null or a mismatch description
let objects = 0;

for (let si = 0; si < nSchemas; si++) {
  const server = randSide();
  const client = randSide();
  const ps = pbNode.parse(server), pc = pbNode.parse(client);
  const handshake = JSON.stringify({ server: ps, client: pc, version: nodeVersion(ps, pc) });
  const where = 'schema ' + si + ' ' + JSON.stringify({ server, client });
  lines.push('S\t' + JSON.stringify(server) + '\t' + JSON.stringify(client));
  checks.push((a) => (a === 'ok\t' + nodeVersion(ps, pc) + '\t' + handshake ? null :
    '(e) parsed form/version of ' + where + '\n  node: ' + handshake + '\n  C:    ' + a));
  lines.push('H\t' + handshake);
  checks.push((a) => (a === 'ok\t' + nodeVersion(ps, pc) + '\t' + handshake ? null :
    '(e) from_handshake of ' + where + '\n  C: ' + a));
  if (si % 2 === 0) {
    // the object checks on the set made from the descriptions
    lines.push('S\t' + JSON.stringify(server) + '\t' + JSON.stringify(client));
    checks.push(() => null);
  }
  for (const [sideNo, parsed] of [[0, ps], [1, pc]]) {
    const routes = Object.keys(parsed);
    if (routes.length === 0) continue;
    for (let oi = 0; oi < nObjects / 2; oi++) {
      const route = pick(routes);
      const obj = randObject(parsed[route], parsed, 0);
      objects++;
      pbNode.init({ encoderProtos: parsed, decoderProtos: parsed });
      pbBrowser.init({ encoderProtos: parsed, decoderProtos: parsed });
      const nodeBytes = pbNode.encode(route, obj) || Buffer.alloc(0);
      const expected = JSON.stringify(pbNode.decode(route, nodeBytes));
      // the browser encoder's buffer is as long as the object's JSON: pad it with a key no
      // proto has
      const padded = Object.assign({}, obj, { PadKey: 'x'.repeat(2 * hex(nodeBytes).length + 64) });
      const browserBytes = Buffer.from(pbBrowser.encode(route, padded) || []);
      const ctx = where + ' side ' + sideNo + ' route ' + route + ' object ' + JSON.stringify(obj);
      lines.push('D\t' + sideNo + '\t' + route + '\t' + hex(nodeBytes));
      checks.push((a) => (a === 'ok\t' + expected ? null :
        '(a) decode of node bytes ' + hex(nodeBytes) + ' for ' + ctx + '\n  node: ' + expected +
        '\n  C:    ' + a));
      lines.push('D\t' + sideNo + '\t' + route + '\t' + hex(browserBytes));
      checks.push((a) => (a === 'ok\t' + expected ? null :
        '(b) decode of browser bytes ' + hex(browserBytes) + ' for ' + ctx + '\n  want: ' +
        expected + '\n  C:    ' + a));
      lines.push('E\t' + sideNo + '\t0\t' + route + '\t' + JSON.stringify(obj));
      checks.push((a) => {
        if (a !== 'ok\t' + hex(nodeBytes)) {
          return '(c) encode of ' + ctx + '\n  node: ' + hex(nodeBytes) + '\n  C:    ' + a;
        }
        pbNode.init({ encoderProtos: parsed, decoderProtos: parsed });
        const back = JSON.stringify(pbNode.decode(route, Buffer.from(a.slice(3), 'hex')));
        return back === expected ? null : '(c) node decode of C bytes for ' + ctx + ': ' + back;
      });
      lines.push('E\t' + sideNo + '\t1\t' + route + '\t' + JSON.stringify(obj));
      checks.push((a) => {
        if (!a.startsWith('ok\t')) return '(d) CESU-8 encode of ' + ctx + ': ' + a;
        pbBrowser.init({ encoderProtos: parsed, decoderProtos: parsed });
        const back = JSON.stringify(pbBrowser.decode(route, new Uint8Array(Buffer.from(a.slice(3),
                                                                                      'hex'))));
        return back === expected ? null :
          '(d) browser decode of C CESU-8 bytes ' + a.slice(3) + ' for ' + ctx + '\n  want: ' +
          expected + '\n  got:  ' + back;
      });
    }
  }
}

const run = childProcess.spawnSync(toolPath, [], {
  input: lines.join('\n') + '\n',
  maxBuffer: 1 << 30,
  encoding: 'utf8',
});
if (run.error || run.status !== 0) {
  console.error('protobuf-diff: FAIL: pbtool: ' + (run.error || ('exit status ' + run.status)) +
                (run.stderr ? '\n' + run.stderr : ''));
  process.exit(1);
}
const answers = run.stdout.split('\n');
let mismatches = 0;
for (let i = 0; i < checks.length; i++) {
  const a = answers[i] === undefined ? '(no answer)' : answers[i];
  let why;
  try {
    why = checks[i](a);
  } catch (e) {
    why = 'check ' + i + ' threw on answer ' + a.slice(0, 200) + ': ' + e;
  }
  if (why) {
    mismatches++;
    if (mismatches <= 5) console.log('# mismatch: ' + why);
  }
}
console.log('protobuf-diff: seed ' + seed + ', ' + nSchemas + ' schemas, ' + objects +
            ' objects, ' + lines.length + ' commands, ' + mismatches + ' mismatches');
process.exit(mismatches ? 1 : 0);
