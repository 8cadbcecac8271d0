// Test-only preload for the real pomelo 2.2.7 server under modern Node (spec Appendix B).
// Loaded into every pomelo process (master and children) with NODE_OPTIONS=--require=<this file>.
//
// (a) Every net/http server listens on 127.0.0.1 only, whatever host (or none) the code asks for.
// (b) net.Socket#write(data, {binary: true}, cb): pomelo's raw-TCP socket (tcpsocket.js) passes
//     an object as the "encoding" argument, which old Node ignored and Node >= 8 rejects with
//     ERR_UNKNOWN_ENCODING, so every raw-TCP send would throw. The object is dropped here.
// (c) A watchdog, so that a test killed hard cannot leave servers behind: the process exits when
//     the process whose pid is in PEER_WATCH_PID is gone, or after PEER_MAX_SECONDS.
'use strict';

const net = require('net');

const LOOPBACK = '127.0.0.1';

// (a) net.Server#listen(port[, host][, backlog][, cb]) or listen(options[, cb]); http.Server and
// https.Server inherit it. Pipes (a path) and handles are left alone.
const origListen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  const isPort = (v) => typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v));
  if (args.length === 0 || typeof first === 'function') {
    args.unshift({ port: 0, host: LOOPBACK });
  } else if (isPort(first) || first === null || first === undefined) {
    if (typeof args[1] === 'string') {
      args[1] = LOOPBACK;
    } else {
      args.splice(1, 0, LOOPBACK);
    }
  } else if (first && typeof first === 'object' && first.path === undefined &&
             first.handle === undefined && first._handle === undefined && first.fd === undefined) {
    args[0] = Object.assign({}, first, { host: LOOPBACK });
  }
  return origListen.apply(this, args);
};

// (b) Drop an object passed where the encoding string belongs.
const origWrite = net.Socket.prototype.write;
net.Socket.prototype.write = function (data, encoding, cb) {
  if (encoding !== null && typeof encoding === 'object') {
    return origWrite.call(this, data, cb);
  }
  return origWrite.apply(this, arguments);
};

// (c) Watchdog. Timers are unref'd: they never keep a process alive by themselves.
const watchPid = Number(process.env.PEER_WATCH_PID || 0);
const maxSeconds = Number(process.env.PEER_MAX_SECONDS || 0);
if (watchPid > 0) {
  setInterval(() => {
    try {
      process.kill(watchPid, 0);
    } catch (e) {
      if (e.code === 'ESRCH') {
        process.exit(0);
      }
    }
  }, 1000).unref();
}
if (maxSeconds > 0) {
  setTimeout(() => process.exit(0), maxSeconds * 1000).unref();
}
