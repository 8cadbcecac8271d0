// The browser environment of pomelo-jsclient-websocket in node, shared by the tests that run
// the real browser client (ws-jsclient.js, tls.js); not a test itself. Requiring it makes
// `window` (globalThis), window.Protocol, window.protobuf, window.EventEmitter, localStorage and
// the global WebSocket (the `ws` package) what a browser page gives the client, and quiets the
// client's own logging into one "# jsclient: " line per call.
//   const env = require('./jsclient-env.js');
//   env.say('...');                          // print (console.log is the client's now)
//   const pomelo = env.loadClient(env.protocolBrowser);   // a fresh copy: one connection each
//   env.setGlobal('WebSocket', MyWebSocket); // before a copy is used, e.g. for wss://
//   const pb = env.loadClient(env.protocolBrowser, env.protobufBrowser()); // as the demo page
//   env.storage                              // the Map behind localStorage
// window.protobuf is the node entry point of pomelo-protobuf unless a copy is loaded with
// another: protobufBrowser() is a fresh instance of the browser build (lib/client/protobuf.js,
// what a page loads: CESU-8 strings, varints sent with wire type 2), run as the demo page runs it
// (examples/chat/web/index.html: a stand-in `module`, then decodeStr = decode, since the client
// calls decodeStr, which only the node build has: pomelo-jsclient-websocket issue #17).
'use strict';

const assert = require('assert');
const path = require('path');
const util = require('util');

const clientPath = require.resolve('pomelo-jsclient-websocket');

function uncache(name) {
  const dir = path.dirname(require.resolve(name + '/package.json'));
  for (const k of Object.keys(require.cache)) {
    if (k.startsWith(dir + path.sep)) {
      delete require.cache[k];
    }
  }
}

function setGlobal(name, value) {
  // defineProperty: newer node versions have their own WebSocket and localStorage globals.
  Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
}

const protocolNode = require('pomelo-protocol'); // no `window` yet: Buffer
uncache('pomelo-protocol');
setGlobal('window', globalThis);
const protocolBrowser = require('pomelo-protocol'); // `window` defined: Uint8Array
assert.strictEqual(globalThis.Protocol, protocolBrowser, 'pomelo-protocol sets window.Protocol');
assert.notStrictEqual(protocolBrowser, protocolNode);

const storage = new Map();
setGlobal('localStorage', {
  getItem: (k) => (storage.has(k) ? storage.get(k) : null),
  setItem: (k, v) => storage.set(k, String(v)),
  removeItem: (k) => storage.delete(k),
  clear: () => storage.clear(),
});
const protobufNode = require('pomelo-protobuf');
setGlobal('protobuf', protobufNode);
setGlobal('EventEmitter', require('events'));
setGlobal('WebSocket', require('ws'));

// The client logs with console.log and console.error (on close, the whole close event): from
// here on both print one short "# jsclient: " line each; this script prints with `say`.
const say = console.log.bind(console);
console.log = console.error = (...args) => {
  const text = args.map((a) => {
    if (a && typeof a === 'object' && 'code' in a && 'wasClean' in a) {
      return 'CloseEvent{code: ' + a.code + ', wasClean: ' + a.wasClean + '}';
    }
    return typeof a === 'string' ? a : util.inspect(a, { depth: 0, breakLength: Infinity });
  });
  say('# jsclient: ' + text.join(' ').slice(0, 200));
};

// A fresh instance of the browser build of pomelo-protobuf, with the demo page's decodeStr
// alias (ws-wire.js's browserProtobuf).
function protobufBrowser() {
  return require('./ws-wire.js').browserProtobuf();
}

// A fresh copy of the client (it keeps its state in its closure: one connection per copy),
// with `protocol` as window.Protocol and `protobuf` (default: the node build) as
// window.protobuf while it loads (it keeps both).
function loadClient(protocol, protobuf = protobufNode) {
  setGlobal('Protocol', protocol);
  setGlobal('protobuf', protobuf);
  delete require.cache[clientPath];
  const pomelo = require(clientPath);
  setGlobal('protobuf', protobufNode);
  assert.strictEqual(globalThis.pomelo, pomelo, 'the client sets window.pomelo');
  return pomelo;
}

module.exports = { say, setGlobal, loadClient, protocolBrowser, protocolNode, protobufBrowser,
                   protobufNode, storage };
