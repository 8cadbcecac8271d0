// gate.gateHandler.queryEntry {uid}: tells the client which connector to use,
// {"code":200,"host","port"} (the connector's clientPort), or {"code":500} without a uid or
// without connectors.
'use strict';

const dispatcher = require('../../../util/dispatcher');

function GateHandler(app) {
  this.app = app;
}

GateHandler.prototype.queryEntry = function (msg, session, next) {
  const uid = msg.uid;
  if (!uid) {
    next(null, {code: 500});
    return;
  }
  const connectors = this.app.getServersByType('connector');
  if (!connectors || connectors.length === 0) {
    next(null, {code: 500});
    return;
  }
  const c = dispatcher.dispatch(uid, connectors);
  next(null, {code: 200, host: c.host, port: c.clientPort});
};

module.exports = function (app) {
  return new GateHandler(app);
};
