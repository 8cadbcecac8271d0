// The route function of server type "chat": the chat server is chosen by the session's room.
'use strict';

const dispatcher = require('./dispatcher');

exports.chat = function (session, msg, app, cb) {
  const list = app.getServersByType('chat');
  if (!list || list.length === 0) {
    cb(new Error('can not find chat servers.'));
    return;
  }
  cb(null, dispatcher.dispatch(session.get('rid'), list).id);
};
