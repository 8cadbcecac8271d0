// examples/guide/pomelo-game, the server docs/getting-started.md builds, played by two raw-TCP
// clients (pomelo-protocol) and one WebSocket client (the `ws` package), so the guide's code is
// known to do what the guide says.
//
//   node game.js PATH/TO/pomelo-game
//
// alice logs in (players 1), bob logs in over WebSocket (alice gets onJoin bob), a second
// "alice" is refused with the game's {"code":409}, a move notify before logging in is ignored,
// bob's move reaches both as onMove, onTick arrives about every second (two in 2.5 s, counting
// up), bob leaves (alice gets onLeave bob), and on SIGTERM alice gets KICK "server shutting
// down" and the server exits with status 0. Everything on 127.0.0.1, within 20 s.
//
// Environment: PEER_TESTS_REQUIRED=1 fails instead of skipping (exit 77) when node_modules is
// missing. Exit status: 0 all passed, 1 a failure, 2 usage, 77 skipped.
'use strict';

const assert = require('assert');
const net = require('net');
const path = require('path');

const SKIP = 77;

try {
  for (const m of ['pomelo-protocol', 'ws']) {
    require.resolve(m);
  }
} catch (e) {
  if (process.env.PEER_TESTS_REQUIRED === '1') {
    console.error('game: FAIL: node_modules is missing: run npm ci in tests/peers');
    process.exit(1);
  }
  console.log('game: SKIP: node_modules is missing');
  process.exit(SKIP);
}
const gamePath = process.argv[2];
if (!gamePath) {
  console.error('usage: node ' + path.basename(__filename) + ' PATH/TO/pomelo-game');
  process.exit(2);
}
process.noDeprecation = true;

const WebSocket = require('ws');
const { startEcho, PomeloSocket } = require('./ws-wire.js');

const LOGIN = 'connector.entryHandler.login';
const MOVE = 'connector.playerHandler.move';

// A PomeloSocket over WebSocket (`ws`): each package goes in one binary message, as the browser
// client sends it; received messages feed the same parser as a TCP stream.
function wsPlayer(port) {
  const ws = new WebSocket('ws://127.0.0.1:' + port + '/');
  const events = { connect: 'open', data: 'message', close: 'close', error: 'error' };
  const stream = {
    on: (ev, fn) => ws.on(events[ev], ev === 'data' ? (d) => fn(Buffer.from(d)) : fn),
    write: (b) => ws.send(b),
  };
  const p = new PomeloSocket(stream, 'connect');
  p.close = () => ws.close();
  return p;
}

async function main() {
  const limit = setTimeout(() => {
    console.error('game: FAIL: took more than 20 s');
    process.exit(1);
  }, 20000);
  const srv = await startEcho(gamePath, []);
  const results = [];
  const check = async (name, fn) => {
    try {
      results.push({ name, ok: true, text: await fn() });
    } catch (e) {
      results.push({ name, ok: false, text: String(e.stack || e) });
    }
  };
  const alice = new PomeloSocket(net.connect(srv.port, '127.0.0.1'));
  const bob = wsPlayer(srv.port);
  await check('login', async () => {
    await alice.handshake();
    const r = await alice.request(1, LOGIN, { name: 'alice' });
    assert.deepStrictEqual(r.msg.body, { code: 200, players: 1 });
    await bob.handshake({ type: 'js-websocket', version: '0.0.1' });
    bob.notify(MOVE, { x: 0, y: 0 }); // not logged in yet: ignored
    const r2 = await bob.request(1, LOGIN, { name: 'bob' });
    assert.deepStrictEqual(r2.msg.body, { code: 200, players: 2 });
    const join = await alice.push('onJoin');
    assert.deepStrictEqual(join.msg.body, { name: 'bob' });
    return 'alice (TCP) then bob (WebSocket); alice got onJoin bob';
  });
  await check('a taken name is refused', async () => {
    const eve = new PomeloSocket(net.connect(srv.port, '127.0.0.1'));
    try {
      await eve.handshake();
      const r = await eve.request(1, LOGIN, { name: 'alice' });
      assert.deepStrictEqual(r.msg.body, { code: 409 });
      const bad = await eve.request(2, LOGIN, {});
      assert.deepStrictEqual(bad.msg.body, { code: 500 });
      return '{"code":409} for a second alice, {"code":500} without a name';
    } finally {
      eve.sock.destroy();
    }
  });
  await check('moves and ticks', async () => {
    bob.notify(MOVE, { x: 3, y: 4 });
    const a = await alice.push('onMove');
    const b = await bob.push('onMove');
    assert.deepStrictEqual(a.msg.body, { name: 'bob', x: 3, y: 4 });
    assert.deepStrictEqual(b.msg.body, a.msg.body);
    assert.strictEqual(alice.got.filter((p) => p.msg && p.msg.route === 'onMove').length, 1,
                       'the move before login was ignored');
    const t1 = await alice.push('onTick', 0, 2500);
    const t2 = await alice.push('onTick', 1, 2500);
    assert.strictEqual(t2.msg.body.tick, t1.msg.body.tick + 1);
    return 'onMove to both, onTick ' + t1.msg.body.tick + ' then ' + t2.msg.body.tick;
  });
  await check('leaving', async () => {
    bob.close();
    const l = await alice.push('onLeave');
    assert.deepStrictEqual(l.msg.body, { name: 'bob' });
    return 'bob closed: alice got onLeave bob';
  });
  await check('shutdown', async () => {
    const exit = await srv.stop();
    assert.strictEqual(exit, 0, 'exit status ' + exit + '\n' + srv.stderr());
    const k = await alice.kick();
    assert.deepStrictEqual(k.body, { reason: 'server shutting down' });
    return 'SIGTERM: KICK "server shutting down", exit status 0';
  });
  alice.sock.destroy();
  console.log('1..' + results.length);
  let failed = 0;
  results.forEach((r, i) => {
    if (r.ok) {
      console.log('ok ' + (i + 1) + ' - ' + r.name + ': ' + r.text);
    } else {
      failed++;
      console.log('not ok ' + (i + 1) + ' - ' + r.name);
      console.log(r.text.replace(/^/gm, '# '));
    }
  });
  console.log('game: ' + (results.length - failed) + ' passed, ' + failed + ' failed');
  clearTimeout(limit);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error('game: FAIL: ' + (e.stack || e));
  process.exit(1);
});
