// Differential test of libpomelo's package and message codecs against the real npm
// pomelo-protocol@0.1.6, through the pomelo-dump tool.
//
//   node codec-diff.js PATH/TO/pomelo-dump
//
// Direction A: node encodes random messages (Package.encode(TYPE_DATA, Message.encode(...)));
// `pomelo-dump --hex` must print exactly the fields node encoded, and `pomelo-dump --encode --hex`
// of that output must give node's bytes back.
// Direction B: node writes random message descriptions in pomelo-dump's JSON format;
// `pomelo-dump --encode --hex` turns them into bytes, which node's Package.decode/Message.decode
// must read back field by field, and which must equal node's own encoding of the same message.
// Quirks: inputs node accepts but libpomelo deliberately rejects (message types 4..7, id 0, ids
// of 2^31 and more) must make pomelo-dump fail with exit status 1.
//
// Environment: CODEC_DIFF_SEED (a 32-bit integer; default below), CODEC_DIFF_COUNT (messages per
// direction, default 6000), PEER_TESTS_REQUIRED=1 to fail instead of skipping (exit 77) when
// node_modules is missing. Exit status: 0 all equal, 1 a mismatch, 77 skipped.
'use strict';

const childProcess = require('child_process');
const path = require('path');

const SKIP = 77;
const DEFAULT_SEED = 0x90e10;

let Package, Message;
try {
  ({ Package, Message } = require('pomelo-protocol'));
} catch (e) {
  const how = 'node_modules is missing in ' + __dirname + ': run npm ci in tests/peers';
  if (process.env.PEER_TESTS_REQUIRED === '1') {
    console.error('codec-diff: FAIL: ' + how);
    process.exit(1);
  }
  console.log('codec-diff: SKIP: ' + how);
  process.exit(SKIP);
}
// pomelo-protocol 0.1.6 calls the deprecated `new Buffer(string)`; its warning is noise here.
process.noDeprecation = true;

const dumpPath = process.argv[2] || process.env.POMELO_DUMP;
if (!dumpPath) {
  console.error('usage: node ' + path.basename(__filename) + ' PATH/TO/pomelo-dump');
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Seeded PRNG: sfc32 seeded through splitmix32, so a seed reproduces a run exactly.

const seedText = process.env.CODEC_DIFF_SEED;
const seed = seedText === undefined || seedText === '' ? DEFAULT_SEED : Number(seedText) >>> 0;
const count = Number(process.env.CODEC_DIFF_COUNT || 6000);
if (!Number.isInteger(count) || count < 1) {
  console.error('codec-diff: CODEC_DIFF_COUNT must be a positive integer');
  process.exit(2);
}

function splitmix32(s) {
  return function () {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function sfc32(seed32) {
  const init = splitmix32(seed32);
  let a = init(), b = init(), c = init(), d = init();
  const next = function () {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

const rnd32 = sfc32(seed);
const rand = (n) => Math.floor((rnd32() / 4294967296) * n); // 0..n-1
const chance = (p) => rnd32() / 4294967296 < p;
const pick = (arr) => arr[rand(arr.length)];
const randBytes = (n) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = rand(256);
  return b;
};

// ---------------------------------------------------------------------------------------------
// Random messages

const TYPE_NAMES = ['request', 'notify', 'response', 'push'];
const PKG_NAMES = [null, 'handshake', 'handshake_ack', 'heartbeat', 'data', 'kick'];
const hasId = (t) => t === Message.TYPE_REQUEST || t === Message.TYPE_RESPONSE;
const hasRoute = (t) => t !== Message.TYPE_RESPONSE;

// Every varint width (1..5 bytes) at both of its ends.
const EDGE_IDS = [1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455, 268435456, 2147483647];

function randomId() {
  if (chance(0.4)) return pick(EDGE_IDS);
  const bits = 1 + rand(31); // a random width, then a random value of that width
  const lo = bits === 1 ? 1 : 2 ** (bits - 1);
  return lo + Math.floor((rnd32() / 4294967296) * (2 ** bits - lo));
}

// A code point of the given UTF-8 length (never a surrogate).
function codePointOfWidth(w) {
  switch (w) {
    case 1: return 0x20 + rand(0x5f);
    case 2: return 0x80 + rand(0x800 - 0x80);
    case 3: {
      const cp = 0x800 + rand(0x10000 - 0x800 - 0x800);
      return cp >= 0xd800 ? cp + 0x800 : cp; // skip D800..DFFF
    }
    default: return 0x10000 + rand(0x110000 - 0x10000);
  }
}

// A string of at most maxBytes UTF-8 bytes, mixing characters of the given widths.
function utf8String(maxBytes, widths) {
  let s = '', n = 0;
  const target = rand(maxBytes + 1);
  for (;;) {
    const w = pick(widths);
    if (n + w > target) break;
    s += String.fromCodePoint(codePointOfWidth(w));
    n += w;
  }
  return s;
}

const ASCII_ROUTE_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-';
function asciiString(len) {
  let s = '';
  for (let i = 0; i < len; i++) s += ASCII_ROUTE_CHARS[rand(ASCII_ROUTE_CHARS.length)];
  return s;
}

function randomStringRoute() {
  switch (rand(9)) {
    case 0: return '';
    case 1: return asciiString(1);
    case 2: return asciiString(255);
    case 3: return asciiString(rand(256));
    case 4: return pick(['connector.entryHandler.enter', 'chat.chatHandler.send', 'onChat',
      'onAdd', 'onLeave', 'gate.gateHandler.queryEntry']);
    case 5: return utf8String(255, [2]);
    case 6: return utf8String(255, [3]);
    case 7: return utf8String(255, [4]);
    default: return utf8String(255, [1, 2, 3, 4]);
  }
}

function randomRouteCode() {
  return chance(0.3) ? pick([0, 1, 2, 255, 256, 65534, 65535]) : rand(65536);
}

// Byte sequences around the edges of UTF-8 validity.
const UTF8_EDGES = [
  [0xc2, 0x80], [0xdf, 0xbf], [0xe0, 0xa0, 0x80], [0xed, 0x9f, 0xbf], [0xee, 0x80, 0x80],
  [0xef, 0xbf, 0xbf], [0xf0, 0x90, 0x80, 0x80], [0xf4, 0x8f, 0xbf, 0xbf], // valid
  [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf],
  [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80], [0xf0, 0x80, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80],
  [0xf5, 0x80, 0x80, 0x80], [0xff], [0x80], [0xc2], [0xe2, 0x82], [0xf0, 0x9f, 0x98], // invalid
  [0x00], [0x7f], [0x1f], [0x22], [0x5c], [0xe2, 0x80, 0xa8], [0xef, 0xbb, 0xbf], // valid, special
];

function randomJsonValue(depth) {
  switch (rand(depth > 2 ? 4 : 6)) {
    case 0: return rand(1e6) - 5e5;
    case 1: return utf8String(24, [1, 1, 1, 2, 3, 4]) + (chance(0.2) ? '"\\\n\t\u0001' : '');
    case 2: return chance(0.5);
    case 3: return null;
    case 4: {
      const a = [];
      for (let i = rand(5); i > 0; i--) a.push(randomJsonValue(depth + 1));
      return a;
    }
    default: {
      const o = {};
      for (let i = rand(5); i > 0; i--) o[asciiString(1 + rand(8))] = randomJsonValue(depth + 1);
      return o;
    }
  }
}

function randomBody() {
  const r = rand(100);
  if (r < 10) return Buffer.alloc(0);
  if (r < 50) return Buffer.from(JSON.stringify(randomJsonValue(0)));
  if (r < 70) return randBytes(1 + rand(64));
  if (r < 85) { // text around UTF-8 edges, valid or not
    const parts = [];
    for (let i = rand(8); i >= 0; i--) {
      parts.push(chance(0.5) ? Buffer.from(asciiString(rand(6))) : Buffer.from(pick(UTF8_EDGES)));
    }
    return Buffer.concat(parts);
  }
  if (r < 95) return Buffer.from(utf8String(400, [1, 2, 3, 4]));
  if (r < 98) { // large text, up to ~200 KB
    return Buffer.from(JSON.stringify({ data: asciiString(rand(200000)) }));
  }
  return randBytes(rand(200000)); // large binary
}

function randomMessage() {
  const type = rand(4);
  const m = { type, id: 0, compressRoute: 0, route: null, gzip: chance(0.1) ? 1 : 0 };
  if (hasId(type)) m.id = randomId();
  if (hasRoute(type)) {
    if (chance(0.4)) {
      m.compressRoute = 1;
      m.route = randomRouteCode();
    } else {
      m.route = randomStringRoute();
    }
  }
  m.body = randomBody();
  return m;
}

// What the random messages covered, over both directions (printed at the end).
const cover = {
  request: 0, notify: 0, response: 0, push: 0, 'id bytes 1..5': [0, 0, 0, 0, 0],
  'route codes': 0, 'empty routes': 0, '255-byte routes': 0, 'routes with 4-byte UTF-8': 0,
  gzip: 0, 'empty bodies': 0, 'non-UTF-8 bodies': 0, 'bodies over 64 KiB': 0,
};
function tally(m) {
  cover[TYPE_NAMES[m.type]]++;
  if (hasId(m.type)) cover['id bytes 1..5'][Math.min(4, Math.floor(Math.log2(m.id) / 7))]++;
  if (hasRoute(m.type)) {
    if (m.compressRoute) cover['route codes']++;
    else {
      const n = Buffer.byteLength(m.route);
      if (n === 0) cover['empty routes']++;
      if (n === 255) cover['255-byte routes']++;
      if (/[\u{10000}-\u{10ffff}]/u.test(m.route)) cover['routes with 4-byte UTF-8']++;
    }
  }
  if (m.gzip) cover.gzip++;
  if (m.body.length === 0) cover['empty bodies']++;
  if (!isUtf8(m.body)) cover['non-UTF-8 bodies']++;
  if (m.body.length > 65536) cover['bodies over 64 KiB']++;
}

function nodeEncode(m) {
  tally(m);
  const msg = Message.encode(m.id, m.type, m.compressRoute, m.route,
    m.body.length || chance(0.5) ? m.body : null, m.gzip);
  return Buffer.from(Package.encode(Package.TYPE_DATA, msg));
}

// A non-DATA package.
function randomControl() {
  const type = pick([Package.TYPE_HANDSHAKE, Package.TYPE_HANDSHAKE_ACK, Package.TYPE_HEARTBEAT,
    Package.TYPE_KICK]);
  let body = null;
  if (type === Package.TYPE_HANDSHAKE) {
    body = Buffer.from(JSON.stringify({ sys: { type: 'js-websocket', version: '0.0.1' },
      user: randomJsonValue(1) }));
  } else if (type === Package.TYPE_KICK) {
    body = Buffer.from(JSON.stringify({ reason: utf8String(40, [1, 2, 3, 4]) }));
  } else if (chance(0.1)) {
    body = randBytes(rand(8)); // unusual but legal on the package layer
  }
  return { pkgType: type, body: body || Buffer.alloc(0),
    bytes: Buffer.from(Package.encode(type, body && body.length ? body : null)) };
}

// ---------------------------------------------------------------------------------------------
// Running pomelo-dump

function runDump(args, input) {
  const r = childProcess.spawnSync(dumpPath, args, {
    input: typeof input === 'string' ? Buffer.from(input, 'utf8') : input,
    maxBuffer: 1 << 30,
  });
  if (r.error) {
    console.error('codec-diff: cannot run ' + dumpPath + ': ' + r.error.message);
    process.exit(1);
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

const utf8Fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
function isUtf8(buf) {
  try {
    utf8Fatal.decode(buf);
    return true;
  } catch (e) {
    return false;
  }
}

let mismatches = 0;
function mismatch(what, detail) {
  mismatches++;
  if (mismatches <= 20) console.log('MISMATCH ' + what + (detail ? ': ' + detail : ''));
}

const short = (s) => (s.length > 200 ? s.slice(0, 200) + '...' : s);

function checkKeys(where, obj, want) {
  const got = Object.keys(obj).join(',');
  if (got !== want.join(',')) mismatch(where + ' keys', got + ' != ' + want.join(','));
}

// Compares "body"/"body_hex" of a dump line with the bytes node encoded.
function checkBody(where, obj, body, key) {
  const valid = isUtf8(body);
  if (valid) {
    if (typeof obj[key] !== 'string') return mismatch(where + ' ' + key, 'missing');
    if (!Buffer.from(obj[key], 'utf8').equals(body)) mismatch(where + ' ' + key, 'differs');
  } else {
    const hex = obj[key + '_hex'];
    if (typeof hex !== 'string') return mismatch(where + ' ' + key + '_hex', 'missing');
    if (hex !== body.toString('hex')) mismatch(where + ' ' + key + '_hex', 'differs');
  }
}

// ---------------------------------------------------------------------------------------------
// Direction A: node encodes, pomelo-dump decodes (and re-encodes)

function directionA() {
  const items = [];
  for (let i = 0; i < count; i++) {
    if (chance(0.03)) items.push(randomControl()); // now and then a non-DATA package
    const m = randomMessage();
    items.push({ msg: m, bytes: nodeEncode(m) });
  }
  // Hex lines, mostly plain, some with blanks between bytes or upper case, and comments.
  const lines = [];
  for (const it of items) {
    let hex = it.bytes.toString('hex');
    const style = rand(20);
    if (style === 0) hex = hex.replace(/(..)(?!$)/g, '$1 ');
    else if (style === 1) hex = ' \t' + hex.toUpperCase() + '  ';
    else if (style === 2) lines.push('', '# a comment line');
    lines.push(hex);
  }
  const out = runDump(['--hex'], lines.join('\n') + '\n');
  if (out.status !== 0) {
    mismatch('A: pomelo-dump --hex exit status ' + out.status, short(out.stderr));
    return items;
  }
  const outLines = out.stdout.toString('utf8').split('\n');
  if (outLines.pop() !== '') mismatch('A: output does not end with a newline');
  if (outLines.length !== items.length) {
    mismatch('A: line count', outLines.length + ' != ' + items.length);
    return items;
  }
  let offset = 0;
  items.forEach((it, i) => {
    const where = 'A#' + i;
    let o;
    try {
      o = JSON.parse(outLines[i]);
    } catch (e) {
      return mismatch(where + ' JSON', short(outLines[i]));
    }
    if (o.offset !== offset) mismatch(where + ' offset', o.offset + ' != ' + offset);
    offset += it.bytes.length;
    if (!it.msg) {
      const bodyKey = isUtf8(it.body) ? 'body' : 'body_hex';
      checkKeys(where, o, ['offset', 'package', bodyKey]);
      if (o.package !== PKG_NAMES[it.pkgType]) mismatch(where + ' package', o.package);
      checkBody(where, o, it.body, 'body');
      return undefined;
    }
    const m = it.msg;
    const keys = ['offset', 'package', 'message'];
    if (hasId(m.type)) keys.push('id');
    if (hasRoute(m.type)) {
      keys.push(m.compressRoute ? 'route_code' : 'route');
    }
    if (m.gzip) keys.push('gzip');
    keys.push(isUtf8(m.body) ? 'body' : 'body_hex');
    checkKeys(where, o, keys);
    if (o.package !== 'data') mismatch(where + ' package', o.package);
    if (o.message !== TYPE_NAMES[m.type]) mismatch(where + ' message', o.message);
    if (hasId(m.type) && o.id !== m.id) mismatch(where + ' id', o.id + ' != ' + m.id);
    if (hasRoute(m.type)) {
      if (m.compressRoute && o.route_code !== m.route) {
        mismatch(where + ' route_code', o.route_code + ' != ' + m.route);
      }
      if (!m.compressRoute && o.route !== m.route) {
        mismatch(where + ' route', JSON.stringify(o.route) + ' != ' + JSON.stringify(m.route));
      }
    }
    if (m.gzip && o.gzip !== true) mismatch(where + ' gzip', String(o.gzip));
    checkBody(where, o, m.body, 'body');
    return undefined;
  });

  // The dump output, encoded again, must be node's bytes.
  const back = runDump(['--encode', '--hex'], out.stdout);
  if (back.status !== 0) {
    mismatch('A: pomelo-dump --encode --hex exit status ' + back.status, short(back.stderr));
    return items;
  }
  const hexLines = back.stdout.toString('latin1').split('\n');
  hexLines.pop();
  if (hexLines.length !== items.length) {
    mismatch('A: re-encoded line count', hexLines.length + ' != ' + items.length);
  } else {
    items.forEach((it, i) => {
      if (hexLines[i] !== it.bytes.toString('hex')) {
        mismatch('A#' + i + ' re-encoded bytes', short(hexLines[i]) + ' != ' +
          short(it.bytes.toString('hex')));
      }
    });
  }
  return items;
}

// ---------------------------------------------------------------------------------------------
// Direction B: node describes, pomelo-dump encodes, node decodes and re-encodes

function shuffle(a) {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rand(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

function describe(m, offset) {
  const fields = [];
  if (chance(0.5)) fields.push(['offset', chance(0.8) ? offset : rand(1000)]); // ignored value
  fields.push(['package', 'data'], ['message', TYPE_NAMES[m.type]]);
  if (hasId(m.type)) fields.push(['id', m.id]);
  if (hasRoute(m.type)) {
    if (m.compressRoute) fields.push(['route_code', m.route]);
    else if (chance(0.1)) fields.push(['route_hex', Buffer.from(m.route).toString('hex')]);
    else fields.push(['route', m.route]);
  }
  if (m.gzip) fields.push(['gzip', true]);
  else if (chance(0.1)) fields.push(['gzip', false]);
  if (m.body.length === 0 && chance(0.3)) {
    // no body field: empty
  } else if (isUtf8(m.body) && chance(0.8)) {
    fields.push(['body', m.body.toString('utf8')]);
  } else {
    fields.push(['body_hex', chance(0.2) ? m.body.toString('hex').toUpperCase()
      : m.body.toString('hex')]);
  }
  if (chance(0.2)) shuffle(fields);
  const o = {};
  for (const [k, v] of fields) o[k] = v;
  return JSON.stringify(o);
}

function directionB() {
  const msgs = [];
  const lines = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const m = randomMessage();
    m.bytes = nodeEncode(m);
    msgs.push(m);
    lines.push(describe(m, offset));
    offset += m.bytes.length;
  }
  const out = runDump(['--encode', '--hex'], lines.join('\n') + '\n');
  if (out.status !== 0) {
    mismatch('B: pomelo-dump --encode --hex exit status ' + out.status, short(out.stderr));
    return msgs.length;
  }
  const hexLines = out.stdout.toString('latin1').split('\n');
  hexLines.pop();
  if (hexLines.length !== msgs.length) {
    mismatch('B: line count', hexLines.length + ' != ' + msgs.length);
    return msgs.length;
  }
  msgs.forEach((m, i) => {
    const where = 'B#' + i;
    const bytes = Buffer.from(hexLines[i], 'hex');
    const pkg = Package.decode(bytes);
    if (Array.isArray(pkg) || pkg.type !== Package.TYPE_DATA || !pkg.body) {
      return mismatch(where + ' package', hexLines[i].slice(0, 16));
    }
    if (pkg.body.length !== bytes.length - 4) mismatch(where + ' package length');
    const d = Message.decode(pkg.body);
    if (d.type !== m.type) mismatch(where + ' type', d.type + ' != ' + m.type);
    if (hasId(m.type) && d.id !== m.id) mismatch(where + ' id', d.id + ' != ' + m.id);
    if (d.compressRoute !== (hasRoute(m.type) ? m.compressRoute : 0)) {
      mismatch(where + ' compressRoute');
    }
    if (hasRoute(m.type) && d.route !== m.route) {
      mismatch(where + ' route', JSON.stringify(d.route) + ' != ' + JSON.stringify(m.route));
    }
    if (d.compressGzip !== m.gzip) mismatch(where + ' gzip');
    if (!Buffer.from(d.body).equals(m.body)) mismatch(where + ' body');
    // node's own encoding of what it decoded, and of the original message, equal our bytes
    const again = Buffer.from(Package.encode(Package.TYPE_DATA,
      Message.encode(d.id, d.type, d.compressRoute, d.route, d.body, d.compressGzip)));
    if (!again.equals(bytes)) mismatch(where + ' node re-encoding');
    if (!m.bytes.equals(bytes)) mismatch(where + ' bytes', short(hexLines[i]));
    return undefined;
  });
  return msgs.length;
}

// ---------------------------------------------------------------------------------------------
// Deliberate differences: node accepts these, libpomelo rejects them

let quirks = 0;
function expectRejected(what, args, input, nodeSays) {
  quirks++;
  const r = runDump(args, input);
  if (r.status !== 1 || !/^pomelo-dump: offset 0: /.test(r.stderr)) {
    mismatch('quirk ' + what + ': pomelo-dump exit status ' + r.status, short(r.stderr.trim()));
  } else if (!nodeSays) {
    mismatch('quirk ' + what + ': node no longer behaves as documented');
  }
}

function quirkChecks() {
  const hexOf = (b) => Buffer.from(b).toString('hex') + '\n';
  const data = (msgBytes) => Buffer.from(Package.encode(Package.TYPE_DATA, Buffer.from(msgBytes)));

  // Message types 4..7: node's Message.decode accepts them (no id, no route, all body).
  for (let t = 4; t <= 7; t++) {
    for (const extra of [0, 1, 0x10]) {
      const flag = (t << 1) | extra;
      const d = Message.decode(Buffer.from([flag, 1, 2]));
      expectRejected('message type ' + t + ' flag 0x' + flag.toString(16), ['--hex'],
        hexOf(data([flag, 1, 2])), d.type === t && d.body.length === 2);
    }
  }
  // Id 0: node encodes and decodes it (a request the server never answers).
  for (const type of [Message.TYPE_REQUEST, Message.TYPE_RESPONSE]) {
    const bytes = Message.encode(0, type, 0, 'a.b.c', Buffer.from('{}'));
    const d = Message.decode(bytes);
    expectRejected(TYPE_NAMES[type] + ' id 0 (bytes)', ['--hex'],
      hexOf(Package.encode(Package.TYPE_DATA, bytes)), d.id === 0 && d.type === type);
    expectRejected(TYPE_NAMES[type] + ' id 0 (JSON)', ['--encode'],
      JSON.stringify({ package: 'data', message: TYPE_NAMES[type], id: 0,
        ...(type === Message.TYPE_REQUEST ? { route: 'a.b.c' } : {}), body: '{}' }) + '\n',
      true);
  }
  // Ids of 2^31 and more: node's encoder truncates them and its decoder turns them negative.
  for (const id of [2 ** 31, 2 ** 31 + 1, 2 ** 32 - 1]) {
    const truncated = Message.encode(id, Message.TYPE_REQUEST, 0, '', null);
    const varint = [];
    for (let v = id; ; v = Math.floor(v / 128)) {
      if (v < 128) {
        varint.push(v);
        break;
      }
      varint.push((v % 128) | 128);
    }
    const full = Buffer.from([0, ...varint, 0]);
    const d = Message.decode(full);
    expectRejected('id ' + id + ' as node encodes it (' + Buffer.from(truncated).toString('hex') +
      ')', ['--hex'], hexOf(Package.encode(Package.TYPE_DATA, truncated)),
    truncated.length < full.length);
    expectRejected('id ' + id + ' as a 5-byte varint', ['--hex'],
      hexOf(Package.encode(Package.TYPE_DATA, full)), d.id < 0);
    expectRejected('id ' + id + ' (JSON)', ['--encode'],
      JSON.stringify({ package: 'data', message: 'request', id, route: '' }) + '\n', true);
  }
  // A sixth varint byte: node wraps the shift; we stop at 5 bytes.
  const six = Buffer.from([0, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 0]);
  expectRejected('6-byte varint id', ['--hex'], hexOf(data(six)), Message.decode(six).id === 1);
  // Message types 4..7 in JSON: node's encoder throws too, so no difference, but check ours.
  expectRejected('JSON message type "type4"', ['--encode'],
    '{"package":"data","message":"type4","body":""}\n', true);
}

// ---------------------------------------------------------------------------------------------

const started = Date.now();
console.log('codec-diff: seed ' + seed + ' (set CODEC_DIFF_SEED to change), ' + count +
  ' messages per direction, pomelo-protocol@' + require('pomelo-protocol/package.json').version);
const itemsA = directionA();
const a = itemsA.filter((it) => it.msg).length;
const b = directionB();
quirkChecks();
console.log('codec-diff: direction A (node encodes, pomelo-dump decodes and re-encodes): ' + a +
  ' messages and ' + (itemsA.length - a) + ' other packages');
console.log('codec-diff: direction B (pomelo-dump encodes, node decodes and re-encodes): ' + b +
  ' messages');
console.log('codec-diff: covered ' + Object.keys(cover).map((k) => k + ' ' +
  (Array.isArray(cover[k]) ? cover[k].join('/') : cover[k])).join(', '));
console.log('codec-diff: ' + quirks + ' deliberate differences checked (pomelo-dump rejects what ' +
  'node accepts)');
console.log('codec-diff: ' + (a + b) + ' messages, ' + mismatches + ' mismatches (' +
  ((Date.now() - started) / 1000).toFixed(1) + ' s)');
process.exit(mismatches ? 1 : 0);
