// Picks one server of a list by the CRC-32 of a key: Math.abs(crc32(key)) % n, with npm crc@0.2.0
// (signed 32-bit result), as chatofpomelo does for the gate's answer and the chat route.
'use strict';

const crc = require('crc');

exports.dispatch = function (key, list) {
  return list[Math.abs(crc.crc32(key)) % list.length];
};
