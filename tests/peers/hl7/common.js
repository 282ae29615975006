'use strict';
// What sender.js and receiver.js share: TLS options from PEM files, one JSON object per output line, and reading a
// field of a node-hl7-client Message as its raw ER7 text.

const fs = require('node:fs');

/** TLS options for node:tls from PEM file paths (any may be empty): `ca` to trust, `cert`/`key` to present. */
function tlsOptions({ ca, cert, key }) {
  const options = {};
  if (ca) options.ca = fs.readFileSync(ca);
  if (cert) options.cert = fs.readFileSync(cert);
  if (key) options.key = fs.readFileSync(key);
  return options;
}

/** A writer of JSON lines to `path` (appended, synchronously, so a killed process loses nothing) or stdout. */
function jsonLines(path) {
  if (path) {
    const fd = fs.openSync(path, 'a');
    return (object) => fs.writeSync(fd, `${JSON.stringify(object)}\n`);
  }
  return (object) => process.stdout.write(`${JSON.stringify(object)}\n`);
}

/** The raw ER7 text of `path` ("MSH.9", "ERR.2") in a parsed Message; "" when the message has no such element. */
function raw(message, path) {
  const node = message.get(path);
  try {
    return node.toRaw();
  } catch {
    return ''; // node-hl7-client's empty node throws on toRaw()
  }
}

module.exports = { jsonLines, raw, tlsOptions };
