// chatofpomelo's game server (NetEase's chatofpomelo-websocket, spec section 9), rebuilt for
// pomelo 2.2.7 as the real cluster of bench/cluster.sh: 1 gate, 3 connectors, 3 chat servers.
//
//   npm ci                                  (once, in this folder)
//   NODE_OPTIONS=--require=$TOP/tests/peers/pomelo-server/shim.js setsid node app.js
//
// `node app.js` is the master: it reads config/servers.json and starts every server as a child
// (`node app.js env=development id=... serverType=...`), all in the master's process group.
// The shim (spec Appendix B) keeps every listen() on 127.0.0.1 and lets pomelo's raw-TCP socket
// write under Node >= 8; WebSocket clients do not need it.
//
// Ports: the committed config is chatofpomelo's layout (gate 3014, connectors 3050-3052, their
// RPC ports 4050-4052, chat servers 6050-6052, master 3005). These variables move them, in every
// process (the children see the same environment), so a bench can pick free ones:
//   CHAT_GATE_PORT       the gate's clientPort
//   CHAT_CONNECTOR_PORT  the first connector's clientPort (the next ones follow: +1, +2)
//   CHAT_RPC_PORT        the first RPC port: connectors at +0..+2, chat servers at +3..+5
//   CHAT_MASTER_PORT     the master's admin port
// pomelo loads config/servers.json and config/master.json with require(), so the objects this
// file requires first (and adjusts) are the ones pomelo then gets from require's cache.
'use strict';

const path = require('path');

function envPort(name) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    return null;
  }
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0 || n > 65535) {
    throw new Error(name + ' is not a port: ' + v);
  }
  return n;
}

const ENV = 'development';
const servers = require(path.join(__dirname, 'config', 'servers.json'))[ENV];
const master = require(path.join(__dirname, 'config', 'master.json'))[ENV];
const gatePort = envPort('CHAT_GATE_PORT');
const connectorPort = envPort('CHAT_CONNECTOR_PORT');
const rpcPort = envPort('CHAT_RPC_PORT');
const masterPort = envPort('CHAT_MASTER_PORT');
if (gatePort !== null) {
  servers.gate[0].clientPort = gatePort;
}
servers.connector.forEach((s, i) => {
  if (connectorPort !== null) {
    s.clientPort = connectorPort + i;
  }
  if (rpcPort !== null) {
    s.port = rpcPort + i;
  }
});
servers.chat.forEach((s, i) => {
  if (rpcPort !== null) {
    s.port = rpcPort + servers.connector.length + i;
  }
});
if (masterPort !== null) {
  master.port = masterPort;
}

const pomelo = require('pomelo');
const routeUtil = require('./app/util/routeUtil');

const app = pomelo.createApp();
app.set('name', 'chatofpomelo-websocket');

// Connectors: hybrid (raw TCP and WebSocket on one port), heartbeat 3 s, route dictionary and
// protobuf (config/serverProtos.json: onChat).
app.configure('production|development', 'connector', function () {
  app.set('connectorConfig', {
    connector: pomelo.connectors.hybridconnector,
    heartbeat: 3,
    useDict: true,
    useProtobuf: true,
  });
});

// The gate: hybrid, protobuf announced, no heartbeat and no dictionary.
app.configure('production|development', 'gate', function () {
  app.set('connectorConfig', {
    connector: pomelo.connectors.hybridconnector,
    useProtobuf: true,
  });
});

app.configure('production|development', function () {
  // chat.* requests go to the chat server picked by crc32 of the session's room.
  app.route('chat', routeUtil.chat);
  // Logs requests slower than 3 s (chatofpomelo has it too).
  app.filter(pomelo.timeout());
});

app.start();

process.on('uncaughtException', function (err) {
  console.error(' Caught exception: ' + err.stack);
});
