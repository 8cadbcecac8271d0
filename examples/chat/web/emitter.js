// A tiny EventEmitter for the Pomelo browser client (pomelo-jsclient-websocket), which takes
// window.EventEmitter when it loads and makes itself with Object.create(EventEmitter.prototype):
// the constructor never runs, so the listener table is made on first use. The client itself
// calls only emit(); the page calls on(), once() and off().
'use strict';

(function (root) {
  function EventEmitter() {}

  function table(emitter) {
    if (!Object.prototype.hasOwnProperty.call(emitter, '_listeners')) {
      Object.defineProperty(emitter, '_listeners', { value: Object.create(null) });
    }
    return emitter._listeners;
  }

  EventEmitter.prototype.on = function (event, fn) {
    const t = table(this);
    (t[event] || (t[event] = [])).push(fn);
    return this;
  };
  EventEmitter.prototype.addListener = EventEmitter.prototype.on;

  EventEmitter.prototype.once = function (event, fn) {
    const self = this;
    function wrapper(...args) {
      self.off(event, wrapper);
      fn.apply(self, args);
    }
    wrapper.listener = fn;
    return this.on(event, wrapper);
  };

  // off(event, fn) removes one listener; off(event) all of that event; off() every listener.
  EventEmitter.prototype.off = function (event, fn) {
    const t = table(this);
    if (event === undefined) {
      for (const k of Object.keys(t)) {
        delete t[k];
      }
    } else if (fn === undefined) {
      delete t[event];
    } else if (t[event]) {
      t[event] = t[event].filter((l) => l !== fn && l.listener !== fn);
    }
    return this;
  };
  EventEmitter.prototype.removeListener = EventEmitter.prototype.off;
  EventEmitter.prototype.removeAllListeners = function (event) {
    return this.off(event);
  };

  // Calls the listeners of `event` in the order they were added; true when there were any.
  EventEmitter.prototype.emit = function (event, ...args) {
    const list = table(this)[event];
    if (!list || list.length === 0) {
      return false;
    }
    for (const fn of list.slice()) { // a listener may remove itself (once) or others
      fn.apply(this, args);
    }
    return true;
  };

  root.EventEmitter = EventEmitter;
})(window);
