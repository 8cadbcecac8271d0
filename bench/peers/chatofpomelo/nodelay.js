// Bench-only preload (bench/cluster.sh, CHAT_NODELAY=1): TCP_NODELAY on every TCP socket of
// the pomelo processes, the ones they accept and the ones they open. chatofpomelo's code and
// config are unchanged; what changes is that a small write no longer waits for the ACK of the
// previous one (Nagle's algorithm), which with the peer's delayed ACK costs up to 40 ms a hop.
// pomelo 2.2.7's RPC sockets (pomelo-rpc 1.0.7, MQTT over TCP) and its raw-TCP client sockets
// (unless connectorConfig.setNoDelay) keep Nagle on; ws@1.1.1 already turns it off for
// WebSocket clients. Loaded with NODE_OPTIONS=--require=<this file> after the shim.
'use strict';

const net = require('net');

const origConnect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  this.setNoDelay(true);
  return origConnect.apply(this, args);
};

const origEmit = net.Server.prototype.emit;
net.Server.prototype.emit = function (event, socket, ...rest) {
  if (event === 'connection' && socket && typeof socket.setNoDelay === 'function') {
    socket.setNoDelay(true);
  }
  return origEmit.call(this, event, socket, ...rest);
};
