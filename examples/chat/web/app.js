// The chat page of libpomelo's demo (docs/chat.md), on the real Pomelo browser client
// (window.pomelo, from pomelo-jsclient-websocket). The flow is chatofpomelo's (spec section 9):
//   1. connect to the gate, request gate.gateHandler.queryEntry {uid}, which names a connector,
//      and disconnect;
//   2. connect to that connector and request connector.entryHandler.enter {username, rid}: the
//      answer lists the users of the room;
//   3. chat with chat.chatHandler.send {rid, content, from, target}; the server pushes onAdd,
//      onLeave and onChat, which the client emits as events.
// The first part has no DOM in it: tests/peers/chat-demo.js runs it in node against
// pomelo-chat. The second part is the page.
'use strict';

(function (root) {
  const pomelo = root.pomelo;

  // -------------------------------------------------------------------------------------------
  // Talking to the servers

  const REQUEST_TIMEOUT_MS = 10000;
  const CLOSE_WAIT_MS = 1000;
  let socket = null; // the WebSocket of the connection of the moment (pomelo.init gives it)

  // Connects and handshakes; resolves with the WebSocket, rejects if that fails.
  function connect(host, port) {
    return new Promise((resolve, reject) => {
      const fail = () => {
        stopListening();
        reject(new Error('cannot connect to ' + host + ':' + port));
      };
      const stopListening = () => {
        pomelo.off('io-error', fail);
        pomelo.off('close', fail);
        pomelo.off('error', fail); // a refused handshake
      };
      pomelo.on('io-error', fail);
      pomelo.on('close', fail);
      pomelo.on('error', fail);
      pomelo.init({ host, port }, (ws) => {
        stopListening();
        socket = ws;
        resolve(ws);
      });
    });
  }

  // Closes the connection; resolves once it is closed (or after CLOSE_WAIT_MS), so that its
  // 'close' event cannot be taken for the next connection's.
  function disconnect() {
    const ws = socket;
    socket = null;
    if (!ws) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pomelo.off('close', onClose);
        resolve();
      };
      const onClose = (event) => {
        if (!event || event.target === ws) {
          done();
        }
      };
      const timer = setTimeout(done, ws.readyState === 3 /* CLOSED */ ? 0 : CLOSE_WAIT_MS);
      pomelo.on('close', onClose);
      pomelo.disconnect();
    });
  }

  // A request; resolves with the response body. The client has no request timeout of its own.
  function request(route, body) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer to ' + route)),
                               REQUEST_TIMEOUT_MS);
      pomelo.request(route, body, (response) => {
        clearTimeout(timer);
        resolve(response);
      });
    });
  }

  // gate -> connector -> room; resolves with the names of the room's users (self included).
  async function login(gate, username, rid) {
    await connect(gate.host, gate.port);
    let entry;
    try {
      entry = await request('gate.gateHandler.queryEntry', { uid: username });
    } finally {
      await disconnect(); // the gate's work is done either way
    }
    if (entry.code !== 200) {
      throw new Error('the gate found no connector (code ' + entry.code + ')');
    }
    await connect(entry.host, entry.port);
    let answer;
    try {
      answer = await request('connector.entryHandler.enter', { username, rid });
    } catch (e) {
      await disconnect();
      throw e;
    }
    if (!Array.isArray(answer.users)) {
      await disconnect();
      throw new Error(answer.error ? 'the name ' + username + ' is taken in ' + rid
                                   : 'the connector refused (code ' + answer.code + ')');
    }
    return answer.users;
  }

  // Says `content` to `target` (a user's name, or '*' for the whole room).
  function send(rid, from, target, content) {
    return request('chat.chatHandler.send', { rid, content, from, target });
  }

  const chatClient = { connect, disconnect, request, login, send, socket: () => socket };
  root.chatClient = chatClient;

  // -------------------------------------------------------------------------------------------
  // The page

  if (typeof document === 'undefined') {
    return;
  }
  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);
  const gate = {
    host: query.get('gate-host') || location.hostname || '127.0.0.1',
    port: Number(query.get('gate-port')) || 3014,
  };
  const me = { name: null, rid: null, users: [] };

  // The client caches protobuf descriptions in localStorage ('protos') and sends their version
  // in its handshake: pomelo-chat announces chatofpomelo's own protos (onChat is protobuf), and
  // sends its set to any client whose cached version differs, so a cache left by another Pomelo
  // app served from this address is replaced, never trusted.

  $('gate-address').textContent = 'ws://' + gate.host + ':' + gate.port;

  function setStatus(text) {
    $('status').textContent = text;
  }

  function time() {
    return new Date().toTimeString().slice(0, 5);
  }

  // Adds a line to the message list: kind 'chat', 'private' or 'note'.
  function addLine(kind, who, text) {
    const list = $('messages');
    const li = document.createElement('li');
    li.className = kind;
    const stamp = document.createElement('time');
    stamp.textContent = time();
    li.append(stamp);
    if (who) {
      const b = document.createElement('b');
      b.textContent = who;
      li.append(b);
    }
    const span = document.createElement('span');
    span.textContent = text;
    li.append(span);
    list.append(li);
    list.scrollTop = list.scrollHeight;
  }

  function showUsers() {
    const ul = $('users');
    ul.replaceChildren();
    for (const name of me.users) {
      const li = document.createElement('li');
      li.textContent = name === me.name ? name + ' (you)' : name;
      ul.append(li);
    }
    const select = $('target');
    const chosen = select.value;
    select.replaceChildren(new Option('everyone', '*'));
    for (const name of me.users) {
      if (name !== me.name) {
        select.append(new Option(name, name));
      }
    }
    select.value = me.users.includes(chosen) ? chosen : '*';
  }

  function showRoom(inRoom) {
    $('login').hidden = inRoom;
    $('chat').hidden = !inRoom;
    if (inRoom) {
      $('room-title').textContent = 'Room ' + me.rid;
      $('messages').replaceChildren();
      showUsers();
      $('text').focus();
    } else {
      me.name = null;
      $('name').focus();
    }
  }

  $('login').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = $('name').value.trim();
    const rid = $('room').value.trim();
    $('login-error').textContent = '';
    if (!name || !rid || name.includes('*')) {
      $('login-error').textContent = 'A name (without "*") and a room, please.';
      return;
    }
    $('enter').disabled = true;
    setStatus('connecting to the gate...');
    try {
      me.users = await chatClient.login(gate, name, rid);
      me.name = name;
      me.rid = rid;
      setStatus(name + ' in ' + rid);
      showRoom(true);
      addLine('note', '', 'You entered ' + rid + '.');
    } catch (e) {
      setStatus('not connected');
      // Matched on the message as connect() wrote it, before its first letter is capitalised.
      const refused = /^cannot connect/.test(e.message);
      const why = e.message.charAt(0).toUpperCase() + e.message.slice(1);
      $('login-error').textContent = why + (refused ? ' (is pomelo-chat running?)' : '.');
    } finally {
      $('enter').disabled = false;
    }
  });

  $('leave').addEventListener('click', () => {
    me.name = null; // so that the close is not reported as lost
    chatClient.disconnect();
    setStatus('not connected');
    showRoom(false);
  });

  $('say').addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = $('text').value.trim();
    const target = $('target').value;
    if (!text || !me.name) {
      return;
    }
    $('text').value = '';
    try {
      const answer = await chatClient.send(me.rid, me.name, target, text);
      if (answer.code) {
        addLine('note', '', target === '*' ? 'Not delivered.'
                                           : 'Not delivered: ' + target + ' is not here.');
      } else if (target !== '*') {
        // The server sends a private message to its target only: show our own copy here.
        addLine('private', 'you \u2192 ' + target, text);
      }
    } catch (e) {
      addLine('note', '', e.message);
    }
  });

  pomelo.on('onAdd', (data) => {
    if (!me.users.includes(data.user)) {
      me.users.push(data.user);
    }
    showUsers();
    addLine('note', '', data.user + ' joined.');
  });

  pomelo.on('onLeave', (data) => {
    me.users = me.users.filter((name) => name !== data.user);
    showUsers();
    addLine('note', '', data.user + ' left.');
  });

  pomelo.on('onChat', (data) => {
    if (data.target === '*') {
      addLine('chat', data.from, String(data.msg));
    } else {
      addLine('private', data.from + ' \u2192 you', String(data.msg));
    }
  });

  // The connector went away (pomelo-chat stopped, or heartbeats were lost).
  pomelo.on('close', (event) => {
    if (me.name && event && event.target === chatClient.socket()) {
      chatClient.disconnect();
      setStatus('not connected');
      showRoom(false);
      $('login-error').textContent = 'The connection to the server was lost.';
    }
  });
})(window);
