// The browser environment of pomelo-jsclient-websocket in node, shared by the tests that run
// the real browser client (ws-jsclient.js, tls.js); not a test itself. Requiring it makes
// `window` (globalThis), window.Protocol, window.protobuf, window.EventEmitter, localStorage and
// the global WebSocket (the `ws` package) what a browser page gives the client, and quiets the
// client's own logging into one "# jsclient: " line per call.
//   const env = require('./jsclient-env.js');
//   env.say('...');                          // print (console.log is the client's now)
//   const pomelo = env.loadClient(env.protocolBrowser);   // a fresh copy: one connection each
//   env.setGlobal('WebSocket', MyWebSocket); // before a copy is used, e.g. for wss://
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
setGlobal('protobuf', require('pomelo-protobuf'));
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

// A fresh copy of the client (it keeps its state in its closure: one connection per copy).
function loadClient(protocol) {
  setGlobal('Protocol', protocol);
  delete require.cache[clientPath];
  const pomelo = require(clientPath);
  assert.strictEqual(globalThis.pomelo, pomelo, 'the client sets window.pomelo');
  return pomelo;
}

module.exports = { say, setGlobal, loadClient, protocolBrowser, protocolNode };
