// The chat demo's page (examples/chat/web) in a real browser: Debian's headless Chromium
// (/usr/bin/chromium), driven by the npm playwright-core, against examples/chat/pomelo-chat.
//
//   node chat-browser.js PATH/TO/pomelo-chat
//
// The test starts pomelo-chat on free loopback ports (--gate-port 0 --port 0, waiting for its
// "gate on H:P, connector on H:P" line), serves examples/chat/web (npm ci there first) over http
// on 127.0.0.1 with node's http module, and opens the page with ?gate-host=H&gate-port=P. The
// browser runs with a fresh profile in a temporary directory and no background networking.
//   1. A phone (380x740): the login form fits; a user logs in; the room and its users sit above
//      the messages; the message input is at least 150 px wide, the Send button lies wholly in
//      the viewport, nothing scrolls sideways (scrollWidth <= innerWidth); a long message of
//      ordinary words wraps between words (no word on two lines, word-break not break-all) and
//      an overlong token wraps inside its line; with more lines than fit, the message list
//      scrolls and the page does not grow (Send stays in view); the same at 320x640.
//      Screenshots of both go to a temporary directory that is kept; their paths are printed.
//   2. Two users at desktop width (1280x800), each in a browser context of their own whose
//      profile first met another Pomelo app on this origin: before the page's scripts run
//      (context.addInitScript), localStorage['protos'] holds that app's protos (parsed form, its
//      own version; onChat with other tags and types, onAdd protobuf, a protobuf
//      chat.chatHandler.send), which the client sends the version of in its handshake. The
//      gate answers with pomelo-chat's protos (2zWPnSlRsRxjqgcU215Uxg==), which replace the cache
//      (checked in localStorage after the login, and in the WebSocket frames the browser sent
//      and received, recorded through playwright: the old version to the gate, its protos back,
//      the new version to the connector). The users list beside the messages; alice and bob
//      enter a room, each sees the other; a message to everyone reaches both pages, a private
//      one its target; "hi 😀" (outside the BMP) shows intact in both pages, and so does bob's
//      answer, their onChat frames holding CESU-8 (what the browser's decoder reads), never
//      4-byte UTF-8; bob closes his page and alice's page says "bob left." and drops him from the
//      list.
//   3. No server (the gate address is a closed loopback port): the page's login error is
//      "Cannot connect to H:P (is pomelo-chat running?)".
//   4. No page errors (uncaught exceptions) and no console errors on any page, but the client's
//      own logging of every close ("socket close: ...") and, on the page of step 3, of the
//      refused connection; every http request of the pages was answered 200.
//   5. pomelo-chat exits with status 0 on SIGTERM (so a sanitizer report in an ASan build fails
//      the test).
// Everything runs on 127.0.0.1 and within 60 s; the browser, the http server and pomelo-chat
// are stopped at the end, on failure too.
//
// Environment: PEER_TESTS_REQUIRED=1 fails instead of skipping (exit 77) when playwright-core
// (npm ci here), Chromium (/usr/bin/chromium: tools/setup.sh installs it) or the page's
// node_modules (npm ci in examples/chat/web) is missing. Exit status: 0 all passed, 1 a failure,
// 2 usage, 77 skipped.
'use strict';

const assert = require('assert');
const fs = require('fs');
const http = require('http');
const net = require('net');
const os = require('os');
const path = require('path');

const SKIP = 77;
const OVERALL_LIMIT_MS = 60000;
const WAIT_MS = 5000;
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const WEB_DIR = path.join(__dirname, '..', '..', 'examples', 'chat', 'web');
const PAGE_LIBRARY = 'node_modules/pomelo-jsclient-websocket/lib/pomelo-client.js';
const MIN_INPUT_PX = 150;
const FILL_LINES = 20;
const PHONE = { width: 380, height: 740 };
const SMALL_PHONE = { width: 320, height: 640 };
const DESKTOP = { width: 1280, height: 800 };
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
};

function skipOrFail(how) {
  if (process.env.PEER_TESTS_REQUIRED === '1') {
    console.error('chat-browser: FAIL: ' + how);
    process.exit(1);
  }
  console.log('chat-browser: SKIP: ' + how);
  process.exit(SKIP);
}

try {
  require.resolve('playwright-core');
} catch (e) {
  skipOrFail('playwright-core is missing in ' + __dirname + '/node_modules: run npm ci there');
}
if (!fs.existsSync(CHROMIUM)) {
  skipOrFail(CHROMIUM + ' is missing: run tools/setup.sh (Debian package chromium)');
}
if (!fs.existsSync(path.join(WEB_DIR, PAGE_LIBRARY))) {
  skipOrFail(PAGE_LIBRARY + ' is missing in examples/chat/web: run npm ci there');
}

const chatPath = process.argv[2];
if (!chatPath) {
  console.error('usage: node ' + path.basename(__filename) + ' PATH/TO/pomelo-chat');
  process.exit(2);
}

const { chromium } = require('playwright-core');

const say = console.log.bind(console);
const { sleep, startChat, realProtos } = require('./ws-wire.js'); // pomelo-chat on free ports

// What the page's client stores in localStorage['protos'] after a handshake with protos: the
// server's set as sent, {server, client, version}. pomelo-chat's is chatofpomelo's; the profile
// of the two users first met another app, whose set is this.
const CHAT_PROTOS = realProtos({ onChat: { 'required string msg': 1, 'required string from': 2,
                                           'required string target': 3 } }, {});
assert.strictEqual(CHAT_PROTOS.version, '2zWPnSlRsRxjqgcU215Uxg==');
const OTHER_PROTOS = realProtos(
  { onChat: { 'required uInt32 msg': 3, 'required string target': 1, 'optional string from': 7 },
    onAdd: { 'required string user': 1 } },
  { 'chat.chatHandler.send': { 'required string content': 1, 'optional string rid': 2 } });
const SMILE = '\u{1F600}'; // 😀

// ---------------------------------------------------------------------------------------------
// The page's files over http, from examples/chat/web only; every request is recorded.

function startWebServer(requests) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    let rel;
    try {
      rel = decodeURIComponent(url.pathname);
    } catch (e) {
      rel = '';
    }
    if (rel.endsWith('/')) {
      rel += 'index.html';
    }
    const file = path.resolve(WEB_DIR, '.' + rel);
    let status = 200;
    let body = null;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      status = 405;
    } else if (!file.startsWith(WEB_DIR + path.sep)) {
      status = 403;
    } else {
      try {
        body = fs.readFileSync(file);
      } catch (e) {
        status = 404;
      }
    }
    requests.push({ path: url.pathname, status });
    if (status !== 200) {
      res.writeHead(status, { 'Content-Type': 'text/plain' });
      res.end(String(status));
      return;
    }
    res.writeHead(200, {
      'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
      'Content-Length': body.length,
      'Cache-Control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// A loopback port with nothing listening on it: one the system just gave out, closed again.
function closedPort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Pages

// Console errors that are not failures: pomelo-jsclient-websocket logs every close of its
// socket with console.error, the gate's normal disconnect during login included.
const CLIENT_CLOSE_LOG = /^socket close: /;

// A page in a new browser context; its page errors and console errors are recorded in `log`.
// `stored` (optional): localStorage items set on the page's origin before any script of the
// page runs, as a profile that was there before would have them.
async function openPage(browser, name, viewport, url, log, stored = null) {
  const context = await browser.newContext({ viewport });
  if (stored) {
    await context.addInitScript(([origin, items]) => {
      if (location.origin === origin) {
        for (const [k, v] of Object.entries(items)) {
          localStorage.setItem(k, v);
        }
      }
    }, [new URL(url).origin, stored]);
  }
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const record = { name, pageErrors: [], consoleErrors: [], allowed: 0, refusedOk: false,
                   sockets: [] };
  // The page's WebSockets as the browser saw them: each frame's payload (a Buffer here).
  page.on('websocket', (ws) => {
    const sock = { url: ws.url(), sent: [], received: [] };
    record.sockets.push(sock);
    const bytes = (f) => (Buffer.isBuffer(f.payload) ? f.payload : Buffer.from(f.payload));
    ws.on('framesent', (f) => sock.sent.push(bytes(f)));
    ws.on('framereceived', (f) => sock.received.push(bytes(f)));
  });
  log.push(record);
  page.on('pageerror', (e) => record.pageErrors.push(String(e && e.stack ? e.stack : e)));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') {
      return;
    }
    const text = msg.text();
    const refused = /^socket error: |^WebSocket connection to .* failed/.test(text);
    if (CLIENT_CLOSE_LOG.test(text) || (record.refusedOk && refused)) {
      record.allowed++;
    } else {
      record.consoleErrors.push(text);
    }
  });
  await page.goto(url);
  return { name, context, page, record };
}

function noErrors(user) {
  assert.deepStrictEqual(user.record.pageErrors, [], user.name + ': no page errors');
  assert.deepStrictEqual(user.record.consoleErrors, [], user.name + ': no console errors');
}

// Enters `rid` as `name` through the login form; waits for the room.
async function enter(user, name, rid) {
  const { page } = user;
  await page.fill('#name', name);
  await page.fill('#room', rid);
  await page.click('#enter');
  await page.waitForSelector('#chat', { state: 'visible' });
  assert.strictEqual(await page.textContent('#status'), name + ' in ' + rid);
  assert.strictEqual(await page.textContent('#room-title'), 'Room ' + rid);
}

// Says `text` (to `target`, a name, or everyone) with the form.
async function sayWithForm(user, text, target = '*') {
  await user.page.selectOption('#target', target);
  await user.page.fill('#text', text);
  await user.page.click('#say button');
}

// Waits for a line of the message list whose text content contains `text`.
function waitLine(user, text, kind = null) {
  return user.page.waitForFunction(([t, k]) => {
    const items = [...document.querySelectorAll('#messages li' + (k ? '.' + k : ''))];
    return items.some((li) => li.textContent.includes(t));
  }, [text, kind]);
}

async function usersShown(user) {
  return user.page.$$eval('#users li', (items) => items.map((li) => li.textContent));
}

// The page's geometry, measured in the browser.
function layout(page) {
  return page.evaluate(() => {
    const box = (sel) => {
      const r = document.querySelector(sel).getBoundingClientRect();
      return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width };
    };
    return {
      innerWidth: window.innerWidth,
      innerHeight: window.innerHeight,
      scrollWidth: document.documentElement.scrollWidth,
      bodyScrollWidth: document.body.scrollWidth,
      scrollHeight: document.documentElement.scrollHeight,
      input: box('#text'),
      send: box('#say button'),
      select: box('#target'),
      aside: box('#chat aside'),
      talk: box('#talk'),
      leave: box('#leave'),
    };
  });
}

function checkNoSideScroll(l, what) {
  assert(l.scrollWidth <= l.innerWidth,
         what + ': scrollWidth ' + l.scrollWidth + ' <= innerWidth ' + l.innerWidth);
  assert(l.bodyScrollWidth <= l.innerWidth, what + ': body scrollWidth ' + l.bodyScrollWidth);
}

function inViewport(b, l) {
  return b.left >= 0 && b.top >= 0 && b.right <= l.innerWidth && b.bottom <= l.innerHeight;
}

// Checks the chat room's layout on a phone; returns a summary.
function checkPhoneLayout(l, what) {
  checkNoSideScroll(l, what);
  assert(l.input.width >= MIN_INPUT_PX,
         what + ': the message input is ' + l.input.width + ' px wide (>= ' + MIN_INPUT_PX + ')');
  assert(inViewport(l.send, l), what + ': Send inside the viewport ' + JSON.stringify(l.send));
  assert(inViewport(l.input, l), what + ': the input inside the viewport');
  assert(inViewport(l.select, l), what + ': the "To" selector inside the viewport');
  assert(inViewport(l.leave, l), what + ': Leave inside the viewport');
  assert(l.aside.bottom <= l.talk.top, what + ': the room and its users above the messages');
  return 'input ' + Math.round(l.input.width) + ' px, Send at ' + Math.round(l.send.left) + '-' +
    Math.round(l.send.right) + ' of ' + l.innerWidth + ', scrollWidth ' + l.scrollWidth;
}

// How the last line of the message list that contains `marker` wraps: for each word, on how
// many lines it lies; the line count; the computed word-break and overflow-wrap; overflow.
function measureLine(page, marker) {
  return page.evaluate((m) => {
    const items = [...document.querySelectorAll('#messages li')]
      .filter((li) => li.textContent.includes(m));
    const li = items[items.length - 1];
    const span = li.querySelector('span');
    const text = span.firstChild;
    const linesOf = (range) =>
      new Set([...range.getClientRects()].filter((r) => r.width > 0)
        .map((r) => Math.round(r.top))).size;
    const words = [];
    for (const w of text.data.matchAll(/\S+/g)) {
      const range = document.createRange();
      range.setStart(text, w.index);
      range.setEnd(text, w.index + w[0].length);
      const rects = [...range.getClientRects()];
      words.push({ word: w[0], lines: linesOf(range),
                   right: Math.max(...rects.map((r) => r.right)) });
    }
    const all = document.createRange();
    all.selectNodeContents(span);
    const liBox = li.getBoundingClientRect();
    return {
      words,
      lines: linesOf(all),
      liRight: liBox.right,
      liScrollWidth: li.scrollWidth,
      liClientWidth: li.clientWidth,
      wordBreak: getComputedStyle(span).wordBreak,
      overflowWrap: getComputedStyle(li).overflowWrap,
    };
  }, marker);
}

// ---------------------------------------------------------------------------------------------
// The scenario: steps run in order; the first failure ends it (the later ones depend on it).

async function main() {
  const t0 = Date.now();
  const limit = setTimeout(() => {
    process.stderr.write('chat-browser: FAIL: took more than ' + OVERALL_LIMIT_MS / 1000 +
                         ' s\n');
    process.exit(1);
  }, OVERALL_LIMIT_MS);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-browser-profile-'));
  const shots = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-browser-shots-'));
  process.on('exit', () => fs.rmSync(profile, { recursive: true, force: true }));

  const requests = [];
  const log = [];
  const chat = await startChat(chatPath);
  const host = chat.host;
  say('# pomelo-chat (pid ' + chat.pid + '): gate on ' + host + ':' + chat.gatePort +
      ', connector on ' + host + ':' + chat.connectorPort);
  const web = await startWebServer(requests);
  const base = 'http://127.0.0.1:' + web.address().port + '/';
  const pageUrl = (gatePort) => base + '?gate-host=' + host + '&gate-port=' + gatePort;
  say('# page on ' + pageUrl(chat.gatePort));
  // launchPersistentContext: Chromium gets --user-data-dir=<profile>, the fresh directory above
  // (the args may not name it themselves); its browser() makes the users' separate contexts.
  const persistent = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 20000,
  });
  const browser = persistent.browser();
  say('# Chromium ' + browser.version() + ', profile in ' + profile);

  let phone;
  let alice;
  let bob;
  const steps = [
    ['a phone (380x740): login form, chat room layout, long message, 320x640 too', async () => {
      phone = await openPage(browser, 'phone', PHONE, pageUrl(chat.gatePort), log);
      const { page } = phone;
      assert.strictEqual(await page.textContent('#gate-address'),
                         'ws://' + host + ':' + chat.gatePort, 'the page took ?gate-host/-port');
      const form = await page.evaluate(() => ({
        innerWidth: window.innerWidth,
        scrollWidth: document.documentElement.scrollWidth,
        bodyScrollWidth: document.body.scrollWidth,
        enter: document.querySelector('#enter').getBoundingClientRect().toJSON(),
        name: document.querySelector('#name').getBoundingClientRect().toJSON(),
      }));
      checkNoSideScroll(form, 'the login form');
      assert(form.name.right <= form.innerWidth && form.enter.right <= form.innerWidth,
             'the name input and Enter inside the viewport');
      await enter(phone, 'phoebe', 'phones');
      const summary380 = checkPhoneLayout(await layout(page), '380 px');
      const words = 'A message of ordinary words on a narrow screen: internationalization, ' +
        'responsibilities, extraordinarily, incomprehensibilities and counterrevolutionaries ' +
        'should each stay whole on one line while the sentence wraps between them.';
      const token = 'overlong-' + 'x'.repeat(90);
      const text = words + ' ' + token;
      await sayWithForm(phone, text);
      await waitLine(phone, token, 'chat');
      const m = await measureLine(page, token);
      assert.notStrictEqual(m.wordBreak, 'break-all', 'word-break is ' + m.wordBreak);
      assert.notStrictEqual(m.wordBreak, 'break-word', 'word-break is ' + m.wordBreak);
      assert(m.lines >= 3, 'the message wraps (' + m.lines + ' lines)');
      const broken = m.words.filter((w) => w.word !== token && w.lines !== 1);
      assert.deepStrictEqual(broken, [], 'no ordinary word on two lines');
      const long = m.words.find((w) => w.word === token);
      assert(long.lines >= 2, 'the overlong token wraps (' + long.lines + ' lines)');
      assert(long.right <= m.liRight + 0.5, 'the overlong token stays inside its line');
      assert(m.liScrollWidth <= m.liClientWidth, 'the message line does not overflow');
      // More lines than the list can show: the list scrolls, not the page.
      for (let i = 1; i <= FILL_LINES; i++) {
        await sayWithForm(phone, 'filler line ' + i);
      }
      await waitLine(phone, 'filler line ' + FILL_LINES, 'chat');
      const full = await layout(page);
      checkPhoneLayout(full, '380 px, the list full');
      assert(full.scrollHeight <= full.innerHeight,
             'the page does not grow with the messages: scrollHeight ' + full.scrollHeight);
      await page.evaluate(() => {
        const list = document.querySelector('#messages');
        list.scrollTop = 0; // back to the long message for the screenshot
      });
      const shot380 = path.join(shots, 'chat-380.png');
      await page.screenshot({ path: shot380 });
      say('# screenshot at 380 px: ' + shot380);
      await page.setViewportSize(SMALL_PHONE);
      const l320 = await layout(page);
      const summary320 = checkPhoneLayout(l320, '320 px');
      assert(l320.scrollHeight <= l320.innerHeight, '320 px: scrollHeight ' + l320.scrollHeight);
      const m320 = await measureLine(page, token);
      assert.deepStrictEqual(m320.words.filter((w) => w.word !== token && w.lines !== 1), [],
                             '320 px: no ordinary word on two lines');
      assert(m320.liScrollWidth <= m320.liClientWidth, '320 px: the line does not overflow');
      const shot320 = path.join(shots, 'chat-320.png');
      await page.screenshot({ path: shot320 });
      say('# screenshot at 320 px: ' + shot320);
      noErrors(phone);
      await phone.context.close();
      return '380: ' + summary380 + '; message: ' + m.lines + ' lines, word-break ' +
        m.wordBreak + ', overflow-wrap ' + m.overflowWrap + ', no word broken, the ' +
        token.length + '-character token on ' + long.lines + ' lines; 320: ' + summary320;
    }],
    ['alice and bob (1280x800, two contexts, another app\'s protos cached) enter a room; the ' +
     'users list beside the messages',
     async () => {
       const stored = { protos: JSON.stringify(OTHER_PROTOS) };
       alice = await openPage(browser, 'alice', DESKTOP, pageUrl(chat.gatePort), log, stored);
       bob = await openPage(browser, 'bob', DESKTOP, pageUrl(chat.gatePort), log, stored);
       const cached = (u) => u.page.evaluate(() => localStorage.getItem('protos'));
       for (const u of [alice, bob]) {
         assert.strictEqual(await cached(u), stored.protos, u.name + ': the old cache is there');
       }
       await enter(alice, 'alice', 'room1');
       await enter(bob, 'bob', 'room1');
       for (const u of [alice, bob]) {
         assert.strictEqual(await cached(u), JSON.stringify(CHAT_PROTOS),
                            u.name + ': the cache now holds pomelo-chat\'s protos');
         // The frames: the handshake to the gate sent the old version, the gate answered with
         // pomelo-chat's protos; the one to the connector sent the new version.
         const [toGate, toConnector] = u.record.sockets;
         const handshake = (frame) => {
           assert.strictEqual(frame[0], 1, 'a handshake package');
           return JSON.parse(frame.subarray(4).toString('utf8'));
         };
         assert.strictEqual(handshake(toGate.sent[0]).sys.protoVersion, OTHER_PROTOS.version,
                            u.name + ': the client sent the old cache\'s version');
         assert.deepStrictEqual(handshake(toGate.received[0]).sys.protos, CHAT_PROTOS,
                                u.name + ': the gate sent pomelo-chat\'s protos');
         assert.strictEqual(handshake(toConnector.sent[0]).sys.protoVersion, CHAT_PROTOS.version,
                            u.name + ': then the new version to the connector');
       }
       await waitLine(alice, 'bob joined.', 'note');
       assert.deepStrictEqual(await usersShown(alice), ['alice (you)', 'bob']);
       assert.deepStrictEqual((await usersShown(bob)).sort(), ['alice', 'bob (you)']);
       const l = await layout(alice.page);
       checkNoSideScroll(l, 'desktop');
       assert(l.aside.right <= l.talk.left, 'the users list beside the messages');
       assert(l.aside.top === l.talk.top, 'side by side, same top');
       assert(inViewport(l.send, l), 'Send inside the viewport');
       return 'users ' + JSON.stringify(await usersShown(alice)) + '; aside ' +
         Math.round(l.aside.width) + ' px, input ' + Math.round(l.input.width) + ' px; cached ' +
         'protos ' + OTHER_PROTOS.version + ' replaced by ' + CHAT_PROTOS.version;
     }],
    ['alice says hello to everyone: it appears in bob\'s page; bob answers, then whispers',
     async () => {
       await sayWithForm(alice, 'hello bob, from alice');
       await waitLine(bob, 'alicehello bob, from alice', 'chat');
       await waitLine(alice, 'alicehello bob, from alice', 'chat');
       await sayWithForm(bob, 'hi alice');
       await waitLine(alice, 'bobhi alice', 'chat');
       await sayWithForm(bob, 'just for you', 'alice');
       await waitLine(alice, 'bob \u2192 youjust for you', 'private');
       await waitLine(bob, 'you \u2192 alicejust for you', 'private');
       return 'onChat shown in both pages, both ways; the private one as "bob \u2192 you"';
     }],
    ['"hi ' + SMILE + '" from alice shows intact in both pages, and bob\'s answer', async () => {
      await sayWithForm(alice, 'hi ' + SMILE);
      await waitLine(bob, 'alicehi ' + SMILE, 'chat');
      await waitLine(alice, 'alicehi ' + SMILE, 'chat');
      await sayWithForm(bob, SMILE + SMILE + ' back');
      await waitLine(alice, 'bob' + SMILE + SMILE + ' back', 'chat');
      await waitLine(bob, 'bob' + SMILE + SMILE + ' back', 'chat');
      const last = (u) => u.page.$$eval('#messages li.chat span',
                                        (l) => l.map((x) => x.textContent).slice(-2));
      const cesu = Buffer.from([0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]); // 😀 as the browser's
      for (const u of [alice, bob]) {
        assert.deepStrictEqual(await last(u), ['hi ' + SMILE, SMILE + SMILE + ' back'],
                               u.name + ': the two messages, as sent');
        const toConnector = u.record.sockets[1];
        assert(toConnector.received.some((f) => f.indexOf(cesu) >= 0 && f.indexOf('onChat') > 0),
               u.name + ': onChat came with CESU-8, which the browser\'s decoder reads');
        assert(!toConnector.received.some((f) => f.indexOf(Buffer.from(SMILE)) >= 0),
               u.name + ': never 4-byte UTF-8');
      }
      return 'both pages show ' + JSON.stringify(['hi ' + SMILE, SMILE + SMILE + ' back']);
    }],
    ['bob closes his page: alice sees him leave', async () => {
      noErrors(bob);
      await bob.page.close();
      await waitLine(alice, 'bob left.', 'note');
      assert.deepStrictEqual(await usersShown(alice), ['alice (you)']);
      const targets = await alice.page.$$eval('#target option', (o) => o.map((x) => x.value));
      assert.deepStrictEqual(targets, ['*'], 'bob is no longer a target');
      noErrors(alice);
      return '"bob left." in alice\'s page; users ["alice (you)"]';
    }],
    ['no server: the login error says "is pomelo-chat running?"', async () => {
      const port = await closedPort();
      const lost = await openPage(browser, 'no-server', PHONE, pageUrl(port), log);
      lost.record.refusedOk = true; // the refused WebSocket is logged as an error, rightly
      await lost.page.fill('#name', 'nobody');
      await lost.page.click('#enter');
      await lost.page.waitForFunction(() => document.querySelector('#login-error').textContent);
      const error = await lost.page.textContent('#login-error');
      assert.strictEqual(error, 'Cannot connect to ' + host + ':' + port +
                         ' (is pomelo-chat running?)');
      assert.strictEqual(await lost.page.textContent('#status'), 'not connected');
      assert(await lost.page.isEnabled('#enter'), 'Enter is enabled again');
      assert.strictEqual(await lost.page.isVisible('#chat'), false, 'still at the login form');
      noErrors(lost);
      await lost.context.close();
      return JSON.stringify(error);
    }],
    ['no page errors, no unexpected console errors, every http request answered 200', () => {
      for (const r of log) {
        assert.deepStrictEqual(r.pageErrors, [], r.name + ': page errors');
        assert.deepStrictEqual(r.consoleErrors, [], r.name + ': console errors');
      }
      const bad = requests.filter((r) => r.status !== 200);
      assert.deepStrictEqual(bad, [], 'http requests not answered 200');
      assert(requests.some((r) => r.path === '/' + PAGE_LIBRARY), 'the client was loaded');
      return log.length + ' pages, ' + requests.length + ' requests; allowed console errors ' +
        '(the client\'s close and refusal logs): ' + log.map((r) => r.name + ' ' + r.allowed)
        .join(', ');
    }],
  ];

  let failed = 0;
  let n = 0;
  say('1..' + (steps.length + 1));
  for (const [name, fn] of steps) {
    n++;
    const t = Date.now();
    try {
      const result = await fn();
      say('ok ' + n + ' - ' + name + ': ' + result + ' (' + (Date.now() - t) + ' ms)');
    } catch (e) {
      failed++;
      say('not ok ' + n + ' - ' + name);
      say(String(e.stack || e).replace(/^/gm, '# '));
      for (const r of log) {
        for (const text of r.pageErrors.concat(r.consoleErrors)) {
          say('# ' + r.name + ': ' + text.slice(0, 300));
        }
      }
      break;
    }
  }
  await persistent.close().catch(() => {});
  await new Promise((resolve) => web.close(resolve));
  const exit = await chat.stop();
  n = steps.length + 1;
  if (exit === 0) {
    say('ok ' + n + ' - pomelo-chat exits with status 0 on SIGTERM');
  } else {
    failed++;
    say('not ok ' + n + ' - pomelo-chat exits with status 0 on SIGTERM: ' + exit);
  }
  if (failed) {
    say(chat.stderr().slice(-4000).replace(/^/gm, '# pomelo-chat: '));
  }
  say('# ' + ((Date.now() - t0) / 1000).toFixed(1) + ' s in all');
  say('chat-browser: ' + (n - failed) + ' passed, ' + failed + ' failed' +
      (failed && n > 1 ? ' (the steps after a failure are not run)' : ''));
  clearTimeout(limit);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write('chat-browser: FAIL: ' + (e.stack || e) + '\n');
  process.exit(1);
});
