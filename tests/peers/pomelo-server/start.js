// Starts the real pomelo 2.2.7 server for libpomelo's end-to-end tests: the template app that
// `pomelo init` generates (hybrid connector, heartbeat 3 s, dictionary on), plus one test-only
// handler (with protos for one of its routes), on free loopback ports.
//
// As a module (what the tests do):
//   const { startPomeloServer } = require('./pomelo-server/start.js');
//   const srv = await startPomeloServer();   // { host, port, dir, logFile, stop() }
//   ... talk to srv.host:srv.port ...
//   await srv.stop();                         // kills the whole process group, removes dir
// By hand:
//   node tests/peers/pomelo-server/start.js [--keep]          (runs until Ctrl-C)
//   node tests/peers/pomelo-server/start.js -- CMD ARGS...    (runs CMD with POMELO_HOST,
//                                                              POMELO_PORT and POMELO_PGID,
//                                                              the servers' process group, set;
//                                                              then stops)
//
// How (everything bounded in time, everything on 127.0.0.1):
// 1. `pomelo init` from node_modules/.bin (answering "1", websocket/hybrid connector, to its
//    prompt) generates the app in a fresh temporary directory, never in the source tree.
// 2. game-server/node_modules is a symlink to this folder's node_modules (the pinned pomelo).
// 3. config/servers.json and config/master.json get free ports chosen now; the handler
//    app/servers/connector/handler/testHandler.js (TEST_HANDLER below) is added, and
//    config/serverProtos.json, config/clientProtos.json and config/dictionary.json get the protos
//    and the push route of its `pb` method (TEST_PROTOS and TEST_DICTIONARY below; the template
//    has {} in all three, and its connector already has useDict and useProtobuf on).
// 4. `node app.js` (the master, which forks the connector) starts in a new session (spawn's
//    `detached`, i.e. setsid(2): the pid is the process group to kill), with
//    NODE_OPTIONS=--require=shim.js (spec Appendix B: loopback-only listen, and the raw-TCP write
//    fix without which pomelo 2.2.7 cannot send on raw TCP under modern Node). The shim also
//    makes every server process exit when this process is gone or after PEER_MAX_SECONDS.
// 5. Ready when the client port answers a handshake (30 s at most). One more try with other
//    ports if the first fails (a port taken in between).
// 6. stop(): SIGKILL to the whole process group; also done on exit and on signals.
'use strict';

const childProcess = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const HERE = __dirname;
const MODULES = path.join(HERE, 'node_modules');
const POMELO_BIN = path.join(MODULES, '.bin', 'pomelo');
const SHIM = path.join(HERE, 'shim.js');
const HOST = '127.0.0.1';

// The test-only handler (our code, not pomelo's): routes connector.testHandler.*.
const TEST_HANDLER = `'use strict';
// Test-only handler added by libpomelo's tests (tests/peers/pomelo-server/start.js).
module.exports = function (app) {
  return new TestHandler(app);
};

function TestHandler(app) {
  this.app = app;
}

// Kicks the caller: sessionService.kickBySessionId(sid, reason) closes the session, which sends
// KICK {"reason":...} (reason "bye" unless msg.reason is a string) and then closes the socket.
// No response: by the time next() runs the socket is closed and pomelo drops it.
TestHandler.prototype.kickMe = function (msg, session, next) {
  const reason = typeof msg.reason === 'string' ? msg.reason : 'bye';
  this.app.get('sessionService').kickBySessionId(session.id, reason, function () {
    next(null, {code: 200});
  });
};

// Answers like examples/pomelo-echo: {"code":200,"route":<route>,"echo":<body>}.
TestHandler.prototype.echo = function (msg, session, next) {
  const body = Object.assign({}, msg);
  delete body.__route__;
  next(null, {code: 200, route: msg.__route__, echo: body});
};

// Protobuf both ways: the route is in config/clientProtos.json (its request body is protobuf,
// decoded by pomelo before this runs) and in config/serverProtos.json (the response
// {"code":200,"route":<route>,"echo":<body>} is protobuf too, encoded by the request's route).
// Also pushes onPb {"text":<text>,"n":<n>,"d":0.5} to the caller, protobuf as well, its route
// sent as a code (onPb is in config/dictionary.json): the session is bound to the uid
// "pb-<session id>" and channelService.pushMessageByUids sends to that uid on this connector.
TestHandler.prototype.pb = function (msg, session, next) {
  const app = this.app;
  const body = Object.assign({}, msg);
  delete body.__route__;
  const uid = 'pb-' + session.id;
  session.bind(uid, function (err) {
    if (err) {
      next(err);
      return;
    }
    const push = {text: body.text, n: body.n, d: 0.5};
    app.get('channelService').pushMessageByUids('onPb', push,
                                                [{uid: uid, sid: app.getServerId()}],
                                                function () {});
    next(null, {code: 200, route: msg.__route__, echo: body});
  });
};
`;

// The protos of testHandler.pb (the real config/*Protos.json forms), and the user dictionary
// (push routes, numbered after the handler routes).
const PB_FIELDS = {
  'required string text': 1,
  'optional sInt32 n': 2,
  'repeated uInt32 list': 3,
};
const TEST_PROTOS = {
  client: { 'connector.testHandler.pb': PB_FIELDS },
  server: {
    'connector.testHandler.pb': {
      'required uInt32 code': 1,
      'optional string route': 2,
      'optional Echo echo': 3,
      'message Echo': PB_FIELDS,
    },
    onPb: { 'required string text': 1, 'optional sInt32 n': 2, 'optional double d': 3 },
  },
};
const TEST_DICTIONARY = ['onPb'];

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// A free loopback port: bind port 0, read it, release it.
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const port = srv.address().port;
      srv.close(() => resolve(port));
    });
  });
}

async function freePorts(n) {
  const ports = new Set();
  while (ports.size < n) {
    ports.add(await freePort());
  }
  return [...ports];
}

// Whether a Pomelo server answers a handshake on the port (over raw TCP, which also shows that
// the shim works): a stronger readiness test than an accepted connection.
function answersHandshake(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, HOST);
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    const body = Buffer.from(JSON.stringify({ sys: { type: 'start.js', version: '0' } }));
    const head = Buffer.from([1, body.length >> 16, (body.length >> 8) & 255, body.length & 255]);
    s.setTimeout(2000, () => done(false));
    s.on('connect', () => s.write(Buffer.concat([head, body])));
    s.on('data', (d) => done(d[0] === 1));
    s.on('error', () => done(false));
    s.on('close', () => done(false));
  });
}

// Runs `pomelo init APPDIR`, answering "1" to the connector prompt. Bounded: 30 s.
function pomeloInit(appDir, log) {
  return new Promise((resolve, reject) => {
    const child = childProcess.spawn(process.execPath, [POMELO_BIN, 'init', appDir], {
      cwd: path.dirname(appDir),
      stdio: ['pipe', 'pipe', 'pipe'],
      env: Object.assign({}, process.env, { NODE_OPTIONS: '' }),
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.stdin.end('1\n');
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('pomelo init took more than 30 s:\n' + out));
    }, 30000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      fs.writeFileSync(log, out);
      if (code === 0 && fs.existsSync(path.join(appDir, 'game-server', 'app.js'))) {
        resolve();
      } else {
        reject(new Error('pomelo init failed (exit ' + code + '):\n' + out));
      }
    });
  });
}

function rewriteJson(file, fn) {
  const obj = JSON.parse(fs.readFileSync(file, 'utf8'));
  fn(obj);
  fs.writeFileSync(file, JSON.stringify(obj, null, 2) + '\n');
}

// Every started group, so that an exit or a signal stops them all.
const running = new Set();

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
    return true;
  } catch (e) {
    return false; // ESRCH: the group is gone
  }
}

process.on('exit', () => {
  for (const srv of running) {
    killGroup(srv.pid, 'SIGKILL');
    if (!srv.keep) {
      fs.rmSync(srv.dir, { recursive: true, force: true });
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => process.exit(128 + os.constants.signals[sig]));
}

// Whether this folder's `npm ci` was done.
function installed() {
  return fs.existsSync(path.join(MODULES, 'pomelo', 'package.json'));
}

// Starts the template app. Options: keep (leave the directory), readyMs (default 30000),
// maxSeconds (the servers' own lifetime limit, default 300), log (a function for progress lines).
async function startPomeloServer(opts = {}) {
  try {
    return await startOnce(opts);
  } catch (e) {
    if (e.code === 'NOT_INSTALLED') {
      throw e;
    }
    (opts.log || console.error)('pomelo: start failed, trying again: ' + e.message);
    return startOnce(opts);
  }
}

async function startOnce(opts) {
  const log = opts.log || (() => {});
  if (!installed()) {
    const e = new Error('pomelo is not installed: run npm ci in ' + HERE);
    e.code = 'NOT_INSTALLED';
    throw e;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'libpomelo-pomelo-'));
  const appDir = path.join(dir, 'app');
  const gameDir = path.join(appDir, 'game-server');
  const srv = { host: HOST, port: 0, dir, pid: 0, keep: !!opts.keep };
  srv.logFile = path.join(dir, 'server.log');
  running.add(srv);
  srv.stop = async () => {
    if (srv.pid) {
      killGroup(srv.pid, 'SIGKILL'); // test servers: nothing to save
    }
    running.delete(srv);
    if (!srv.keep) {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
  try {
    await pomeloInit(appDir, path.join(dir, 'init.log'));
    fs.symlinkSync(MODULES, path.join(gameDir, 'node_modules'), 'dir');
    const [masterPort, rpcPort, clientPort] = await freePorts(3);
    rewriteJson(path.join(gameDir, 'config', 'servers.json'), (cfg) => {
      for (const env of Object.keys(cfg)) {
        for (const s of cfg[env].connector) {
          Object.assign(s, { host: HOST, port: rpcPort, clientHost: HOST, clientPort });
        }
      }
    });
    rewriteJson(path.join(gameDir, 'config', 'master.json'), (cfg) => {
      for (const env of Object.keys(cfg)) {
        Object.assign(cfg[env], { host: HOST, port: masterPort });
      }
    });
    fs.writeFileSync(
      path.join(gameDir, 'app', 'servers', 'connector', 'handler', 'testHandler.js'),
      TEST_HANDLER
    );
    const config = (name, obj) =>
      fs.writeFileSync(path.join(gameDir, 'config', name), JSON.stringify(obj, null, 2) + '\n');
    config('serverProtos.json', TEST_PROTOS.server);
    config('clientProtos.json', TEST_PROTOS.client);
    config('dictionary.json', TEST_DICTIONARY);
    srv.port = clientPort;

    const out = fs.openSync(srv.logFile, 'a');
    const child = childProcess.spawn(process.execPath, ['app.js', 'env=development'], {
      cwd: gameDir,
      detached: true, // setsid(): the master and the connector it forks form one process group
      stdio: ['ignore', out, out],
      env: Object.assign({}, process.env, {
        NODE_OPTIONS: '--require=' + SHIM,
        PEER_WATCH_PID: String(process.pid),
        PEER_MAX_SECONDS: String(opts.maxSeconds || 300),
      }),
    });
    fs.closeSync(out);
    srv.pid = child.pid;
    let exited = null;
    child.on('exit', (code, signal) => (exited = signal || code));
    log('pomelo: master pid ' + child.pid + ', client port ' + clientPort + ', dir ' + dir);

    const deadline = Date.now() + (opts.readyMs || 30000);
    for (;;) {
      if (exited !== null) {
        throw new Error('the pomelo master exited (' + exited + ') before listening');
      }
      if (await answersHandshake(clientPort)) {
        break;
      }
      if (Date.now() > deadline) {
        throw new Error('the pomelo connector did not answer a handshake on ' + clientPort);
      }
      await sleep(100);
    }
    child.unref();
    return srv;
  } catch (e) {
    let tail = '';
    try {
      tail = fs.readFileSync(srv.logFile, 'utf8').split('\n').slice(-30).join('\n');
    } catch (e2) {
      // no log yet
    }
    await srv.stop();
    e.message += tail ? '\n--- server log (last lines) ---\n' + tail : '';
    throw e;
  }
}

module.exports = { startPomeloServer, installed, TEST_PROTOS, TEST_DICTIONARY };

if (require.main === module) {
  const args = process.argv.slice(2);
  const keep = args[0] === '--keep';
  const cmd = args.indexOf('--') >= 0 ? args.slice(args.indexOf('--') + 1) : [];
  startPomeloServer({ keep, log: console.error, maxSeconds: cmd.length ? 600 : 3600 }).then(
    (srv) => {
      console.log('pomelo 2.2.7 template app on ' + srv.host + ':' + srv.port);
      if (!cmd.length) {
        console.log('logs: ' + srv.logFile + ' (Ctrl-C stops)');
        setInterval(() => {}, 1 << 30); // keep running until a signal
        return;
      }
      const run = childProcess.spawn(cmd[0], cmd.slice(1), {
        stdio: 'inherit',
        env: Object.assign({}, process.env, {
          POMELO_HOST: srv.host,
          POMELO_PORT: String(srv.port),
          POMELO_PGID: String(srv.pid), // the master's pid: the group of master and connector
        }),
      });
      run.on('exit', async (code, signal) => {
        await srv.stop();
        process.exit(signal ? 1 : code);
      });
    },
    (e) => {
      console.error('start.js: ' + e.message);
      process.exit(1);
    }
  );
}
