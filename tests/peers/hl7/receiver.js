#!/usr/bin/env node
'use strict';
// An HL7 v2 receiver playing a hospital's inbound interface for status messages, built on node-hl7-server (npm, not
// written here): it listens with TLS, answers every message with an ACK (MSA-1 AA by default), and writes one JSON
// line per message received.
//
//   node receiver.js --port 0 --cert server.pem --key server-key.pem --ca ca.pem --out received.jsonl
//
// --port 0 takes a free port; the first line written is {"type":"listening","port":N}. With --ca the client must
// present a certificate that chains to it (mutual TLS: node-hl7-server passes requestCert and ca to tls.createServer,
// whose rejectUnauthorized defaults to true); without --ca no client certificate is asked for. --plain listens
// without TLS. --ack AA|AE|AR answers with that code; --ack none never answers (a peer that stops acknowledging).
// Each message: {"type":"message","msh9":"ORM^O01","msh10":"...","orc1":"SC","orc2":"...","orc3":"...",
// "orc5":"IP","client_cert_cn":"...","ack":"AA"} (no patient data: the header and ORC ids and status only).
//
// node-hl7-server 2.5.0, read in node_modules (and seen): a connection's buffer is never emptied after a message, so
// a second message on the same connection is read together with the first and answered with the first one's MSA-2.
// So this receiver closes each connection after its first answer; a sender reconnects for the next message (the
// app's status sender opens a connection per message anyway). SIGTERM or SIGINT stops it.

const { parseArgs } = require('node:util');
const { Server } = require('node-hl7-server');
const { jsonLines, raw, tlsOptions } = require('./common');

function options() {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      ca: { type: 'string', default: '' },
      cert: { type: 'string', default: '' },
      key: { type: 'string', default: '' },
      plain: { type: 'boolean', default: false },
      ack: { type: 'string', default: 'AA' },
      out: { type: 'string', default: '' },
    },
  });
  if (!['AA', 'AE', 'AR', 'none'].includes(values.ack)) throw new Error('--ack is AA, AE, AR or none');
  if (!values.plain && !(values.cert && values.key)) throw new Error('--cert and --key are required (or --plain)');
  return { ...values, port: Number(values.port) };
}

function main() {
  let opt;
  try {
    opt = options();
  } catch (err) {
    process.stderr.write(`receiver: ${err.message}\n`);
    process.exitCode = 2;
    return;
  }
  const emit = jsonLines(opt.out);
  const tls = opt.plain ? undefined : { ...tlsOptions(opt), requestCert: Boolean(opt.ca) };
  const server = new Server({ bindAddress: opt.host, ...(tls ? { tls } : {}) });
  const inbound = server.createInbound({ port: opt.port }, async (req, res) => {
    const message = req.getMessage();
    const socket = res._socket; // the connection the message came on, for the client certificate's name
    const peer = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : null;
    emit({
      type: 'message',
      msh9: raw(message, 'MSH.9'),
      msh10: raw(message, 'MSH.10'),
      orc1: raw(message, 'ORC.1'),
      orc2: raw(message, 'ORC.2'),
      orc3: raw(message, 'ORC.3'),
      orc5: raw(message, 'ORC.5'),
      client_cert_cn: (peer && peer.subject && peer.subject.CN) || '',
      ack: opt.ack,
    });
    if (opt.ack === 'none') return; // the connection stays open and silent
    await res.sendResponse(opt.ack);
    socket.end();
  });
  inbound.on('listen', () => emit({ type: 'listening', port: inbound._socket.address().port }));
  inbound.on('error', (err) => {
    process.stderr.write(`receiver: ${err.message}\n`);
    process.exit(1);
  });
  inbound.on('data.error', (err) => process.stderr.write(`receiver: unreadable message: ${err.message}\n`));
  const stop = () => {
    inbound.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
