// chat.chatHandler.send {rid, content, from, target}: onChat {msg, from, target} to the whole
// room when target is "*" (the sender included), else to "target*rid" only. The answer is
// {route: msg.route}: msg.route is undefined, so the client gets {}.
'use strict';

function ChatHandler(app) {
  this.app = app;
}

ChatHandler.prototype.send = function (msg, session, next) {
  const rid = session.get('rid');
  const channelService = this.app.get('channelService');
  const param = {msg: msg.content, from: session.uid.split('*')[0], target: msg.target};
  const channel = channelService.getChannel(rid, false);
  if (msg.target === '*') {
    channel.pushMessage('onChat', param);
  } else {
    const tuid = msg.target + '*' + rid;
    const tsid = channel.getMember(tuid)['sid'];
    channelService.pushMessageByUids('onChat', param, [{uid: tuid, sid: tsid}]);
  }
  next(null, {route: msg.route});
};

module.exports = function (app) {
  return new ChatHandler(app);
};
