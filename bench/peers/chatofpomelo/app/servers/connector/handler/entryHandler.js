// connector.entryHandler.enter {username, rid}: binds the session to "username*rid", keeps the
// room in the session ("rid"), and adds the user to the room's channel on its chat server
// (chatRemote.add, which pushes onAdd to the others first). Answers {users: [names]}, or
// {"code":500,"error":true} when that uid already has a session on this connector. When the
// session closes, chatRemote.kick takes the user out and pushes onLeave.
'use strict';

function EntryHandler(app) {
  this.app = app;
}

function userLeft(app, session) {
  if (!session || !session.uid) {
    return;
  }
  app.rpc.chat.chatRemote.kick(session, session.uid, app.get('serverId'), session.get('rid'),
    null);
}

EntryHandler.prototype.enter = function (msg, session, next) {
  const app = this.app;
  const rid = msg.rid;
  const uid = msg.username + '*' + rid;
  if (app.get('sessionService').getByUid(uid)) {
    next(null, {code: 500, error: true});
    return;
  }
  session.bind(uid);
  session.set('rid', rid);
  session.push('rid', function (err) {
    if (err) {
      console.error('set rid for session service failed! error is : %j', err.stack);
    }
  });
  session.on('closed', userLeft.bind(null, app));
  app.rpc.chat.chatRemote.add(session, uid, app.get('serverId'), rid, true, function (users) {
    next(null, {users: users});
  });
};

module.exports = function (app) {
  return new EntryHandler(app);
};
