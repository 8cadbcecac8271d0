// RPCs of the chat servers, called by the connectors: add a user to a room's channel (after
// pushing onAdd to the members already there) and answer the names in it; kick a user out
// (then push onLeave to the rest).
'use strict';

function namesOf(channel) {
  return channel ? channel.getMembers().map((uid) => uid.split('*')[0]) : [];
}

function ChatRemote(app) {
  this.app = app;
  this.channelService = app.get('channelService');
}

ChatRemote.prototype.add = function (uid, sid, name, flag, cb) {
  const channel = this.channelService.getChannel(name, flag);
  // The legacy form pushMessage(msgWithRoute): the whole object, route included, is the body.
  channel.pushMessage({route: 'onAdd', user: uid.split('*')[0]});
  if (channel) {
    channel.add(uid, sid);
  }
  cb(namesOf(this.channelService.getChannel(name, flag)));
};

ChatRemote.prototype.kick = function (uid, sid, name, cb) {
  const channel = this.channelService.getChannel(name, false);
  if (channel) {
    channel.leave(uid, sid);
  }
  channel.pushMessage({route: 'onLeave', user: uid.split('*')[0]});
  cb();
};

module.exports = function (app) {
  return new ChatRemote(app);
};
