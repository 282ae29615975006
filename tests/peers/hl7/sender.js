#!/usr/bin/env node
'use strict';
// An HL7 v2 sender playing a hospital's interface engine, built on node-hl7-client (npm, not written here): it sends
// each message over MLLP with TLS and a client certificate, waits for its ACK, and prints one JSON line per ACK.
//
//   node sender.js --port 2575 --ca ca.pem --cert peer.pem --key peer-key.pem --input messages.jsonl
//   node sender.js --port 2575 ... --generate 500 --prefix F1 --connections 4 --resend
//
// Input (--input FILE, or - for stdin): JSON lines, each a message as a JSON string or {"message": "..."}; or plain
// ER7 text, messages separated by an empty line (segments on their own lines). --generate N builds N ORM^O01 DME
// orders (CPAP, RQD E0601) with node-hl7-client's message builder instead; MSH-10 and ORC-2 are <prefix><n>.
//
// Output (stdout, or --out FILE), one JSON object per line, each with "at" (when it was written, ms since the epoch):
//   {"type":"ack","seq":0,"control_id":"C1","msa1":"AA","msa2":"C1","msa3":"","err":"","ack":"MSH|...","ms":4.2,
//    "attempt":1,"connection":0}
//   {"type":"failed","seq":0,"control_id":"C1","error":"closed: ECONNRESET","attempt":1,"connection":0}
//   {"type":"gave_up","seq":0,"control_id":"C1","attempts":1}
//   {"type":"summary","messages":..,"acknowledged":..,"gave_up":..,"attempts":..,"failed_attempts":..,
//    "connections":..,"elapsed_s":..,"per_s":..,"ack_ms":{"p50":..,"p95":..,"max":..}}
// A failed attempt is one with no ACK: the connection closed or was refused, the TLS handshake failed, or no ACK came
// within --ack-timeout. Without --resend a failed message is given up at once; with it, the same message (same
// MSH-10) is sent again on a new connection until acknowledged, --max-attempts or --deadline. AE/AR/CR are answers,
// never resent. --connection-per-message closes each connection after its ACK. Exit status 0 when every message was
// acknowledged, 1 otherwise, 2 for bad arguments.
//
// Other options: --host (127.0.0.1), --plain (no TLS: the demo's loopback listener), --connections N (each sends one
// message at a time; they share the queue), --ack-timeout S (10), --max-attempts N (50), --deadline S (300: no resend
// after), --out FILE; for --generate: --sending-application (EPIC), --sending-facility (SANDBOXHOSP) for MSH-3/4,
// --version (2.5.1), --processing-id (P), --enhanced (MSH-15 AL, MSH-16 NE).
//
// node-hl7-client 3.2.0, read in node_modules: Connection.sendMessage() queues a message and opens a second socket
// when called while an ACK is awaited, and with connectionTimeout 0 a closed socket is not reported at all. So this
// script sends one message at a time per connection, watches the connection's socket itself, and makes a new
// Connection for each reconnect (the library's own reconnect destroys the socket every connectionTimeout ms).

const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { Client, Message } = require('node-hl7-client');
const specs = require('node-hl7-client/hl7');
const { jsonLines, raw, tlsOptions } = require('./common');

const SPECS = {
  2.3: specs.HL7_2_3,
  '2.3.1': specs.HL7_2_3_1,
  2.4: specs.HL7_2_4,
  2.5: specs.HL7_2_5,
  '2.5.1': specs.HL7_2_5_1,
};

function options() {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      ca: { type: 'string', default: '' },
      cert: { type: 'string', default: '' },
      key: { type: 'string', default: '' },
      plain: { type: 'boolean', default: false },
      input: { type: 'string', default: '' },
      generate: { type: 'string', default: '0' },
      prefix: { type: 'string', default: 'PEER' },
      'sending-application': { type: 'string', default: 'EPIC' },
      'sending-facility': { type: 'string', default: 'SANDBOXHOSP' },
      version: { type: 'string', default: '2.5.1' },
      'processing-id': { type: 'string', default: 'P' },
      enhanced: { type: 'boolean', default: false },
      connections: { type: 'string', default: '1' },
      resend: { type: 'boolean', default: false },
      'connection-per-message': { type: 'boolean', default: false },
      'ack-timeout': { type: 'string', default: '10' },
      'max-attempts': { type: 'string', default: '50' },
      deadline: { type: 'string', default: '300' },
      out: { type: 'string', default: '' },
    },
  });
  if (!values.port) throw new Error('--port is required');
  return {
    ...values,
    port: Number(values.port),
    generate: Number(values.generate),
    connections: Math.max(1, Number(values.connections)),
    ackTimeoutMs: Number(values['ack-timeout']) * 1000,
    maxAttempts: Math.max(1, Number(values['max-attempts'])),
    deadlineMs: Number(values.deadline) * 1000,
  };
}

/** Messages from --input: JSON lines (strings or {"message": ...}) or ER7 blocks separated by an empty line. */
function readMessages(path) {
  const text = fs.readFileSync(path === '-' ? 0 : path, 'utf8');
  const first = text.trimStart()[0];
  if (first === '"' || first === '{') {
    return text
      .split('\n')
      .filter((line) => line.trim())
      .map((line) => {
        const item = JSON.parse(line);
        return typeof item === 'string' ? item : item.message;
      });
  }
  return text
    .replace(/\r\n?/g, '\n')
    .split(/\n\s*\n/)
    .filter((block) => block.trim())
    .map((block) => block.trim().split('\n').join('\r'));
}

/** ORM^O01 number `n` for a CPAP (RQD E0601), with synthetic people, built with node-hl7-client's builder. */
function ormO01(n, opt) {
  const id = `${opt.prefix}${n}`;
  const Spec = SPECS[opt.version];
  if (!Spec) throw new Error(`--version must be one of ${Object.keys(SPECS).join(', ')}`);
  const msg = new Message({
    specification: new Spec(),
    messageHeader: { msh_9_1: 'ORM', msh_9_2: 'O01', msh_10: id, msh_11_1: opt['processing-id'] },
  });
  msg.set('MSH.3', opt['sending-application']);
  msg.set('MSH.4', opt['sending-facility']);
  msg.set('MSH.5', 'HEALTHCOMMERCE');
  msg.set('MSH.6', 'HC');
  if (opt.enhanced) {
    msg.set('MSH.15', 'AL');
    msg.set('MSH.16', 'NE');
  }
  const birth = new Date(Date.UTC(1950, 0, 1) + (n % 15000) * 86400000).toISOString().slice(0, 10).replace(/-/g, '');
  const pid = msg.addSegment('PID');
  pid.set(1, '1');
  pid.set('3.1', `MRN${id}`);
  pid.set('3.5', 'MR');
  pid.set('5.1', 'Testpatient');
  pid.set('5.2', `Peer${n}`);
  pid.set(7, birth);
  pid.set(8, 'U');
  pid.set('11.1', `${n} Test Street`);
  pid.set('11.3', 'Springfield');
  pid.set('11.4', 'VA');
  pid.set('11.5', '22150');
  pid.set('11.6', 'US');
  pid.set('11.7', 'H');
  pid.set('13.2', 'NET');
  pid.set('13.3', 'Internet');
  pid.set('13.4', `peer${n}@example.org`);
  const in1 = msg.addSegment('IN1');
  in1.set(1, '1');
  in1.set('2.1', 'GOLD');
  in1.set('3.1', 'PAYER01');
  in1.set('4.1', 'Example Health Plan');
  in1.set(36, `MEM${id}`);
  const orc = msg.addSegment('ORC');
  orc.set(1, 'NW');
  orc.set('2.1', id);
  orc.set('2.2', opt['sending-application']);
  orc.set(9, raw(msg, 'MSH.7'));
  orc.set('12.1', '1234567893');
  orc.set('12.2', 'Testdoctor');
  orc.set('12.3', 'Peer');
  orc.set('12.9', 'NPI');
  orc.set('12.13', 'NPI');
  const rqd = msg.addSegment('RQD');
  rqd.set(1, '1');
  rqd.set('2.1', 'E0601');
  rqd.set('2.2', 'CPAP device');
  rqd.set('2.3', 'HCPCS');
  rqd.set(5, '1');
  return msg.toString();
}

function percentile(sorted, q) {
  if (!sorted.length) return 0;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return Math.round(sorted[index] * 10) / 10;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One MLLP connection through node-hl7-client, open (TLS handshake done) when the promise resolves.
 * `send(text)` resolves with the parsed ACK Message, or rejects when the connection closes, fails or no ACK comes
 * within the timeout; after a rejection the link is closed and a new one must be opened.
 */
function openLink(opt, tls) {
  return new Promise((resolve, reject) => {
    const client = new Client({ host: opt.host, connectionTimeout: 0, ...(opt.plain ? {} : { tls }) });
    let pending = null;
    let broken = null;
    let lastError = '';
    const connection = client.createConnection({ port: opt.port, maxConnectionAttempts: 1, waitAck: true }, (res) => {
      const waiting = pending;
      pending = null;
      if (waiting) {
        clearTimeout(waiting.timer);
        waiting.resolve(res.getMessage());
      }
    });
    const socket = connection._socket; // the library reports no close with connectionTimeout 0
    const fail = (why) => {
      if (broken) return;
      broken = lastError ? `${why}: ${lastError}` : why;
      socket.destroy();
      connection.close().catch(() => {});
      if (pending) {
        clearTimeout(pending.timer);
        pending.reject(new Error(broken));
        pending = null;
      }
      reject(new Error(broken)); // a no-op once the link was open
    };
    socket.on('error', (err) => {
      lastError = err.code || err.message;
    });
    socket.once('end', () => fail('closed by the receiver'));
    socket.once('close', () => fail('closed'));
    connection.on('data.error', (err) => fail(`unreadable ACK: ${err.message}`));
    const ready = opt.plain ? 'connect' : 'secureConnect';
    const connectTimer = setTimeout(() => fail('connect timeout'), opt.ackTimeoutMs);
    socket.once(ready, () => {
      clearTimeout(connectTimer);
      resolve({
        get broken() {
          return Boolean(broken);
        },
        send(text) {
          if (broken) return Promise.reject(new Error(broken));
          return new Promise((ok, ko) => {
            pending = { resolve: ok, reject: ko, timer: setTimeout(() => fail('no ACK in time'), opt.ackTimeoutMs) };
            connection.sendMessage(new Message({ text })).catch((err) => fail(`send: ${err.message}`));
          });
        },
        close() {
          if (!broken) {
            broken = 'closed by the sender';
            connection.close().catch(() => {});
          }
        },
      });
    });
  });
}

async function run() {
  let opt;
  try {
    opt = options();
  } catch (err) {
    process.stderr.write(`sender: ${err.message}\n`);
    return 2;
  }
  const write = jsonLines(opt.out);
  const emit = (line) => write({ ...line, at: Date.now() });
  const tls = opt.plain ? undefined : tlsOptions(opt);
  const messages = opt.input ? readMessages(opt.input) : [];
  for (let n = 0; n < opt.generate; n++) messages.push(ormO01(n, opt));
  const queue = messages.map((text, seq) => ({ seq, text, controlId: raw(new Message({ text }), 'MSH.10') }));
  const latencies = [];
  const totals = { acknowledged: 0, gaveUp: 0, attempts: 0, failedAttempts: 0 };
  const started = Date.now();
  const deadline = started + opt.deadlineMs;

  async function worker(connectionNumber) {
    let link = null;
    for (let item = queue.shift(); item; item = queue.shift()) {
      for (let attempt = 1; ; attempt++) {
        totals.attempts++;
        try {
          if (!link || link.broken) link = await openLink(opt, tls); // broken: closed by the receiver after an ACK
          const sentAt = process.hrtime.bigint();
          const ack = await link.send(item.text);
          const ms = Number(process.hrtime.bigint() - sentAt) / 1e6;
          latencies.push(ms);
          await new Promise(setImmediate); // a receiver that closes after its ACK: see its FIN before the next send
          totals.acknowledged++;
          emit({
            type: 'ack',
            seq: item.seq,
            control_id: item.controlId,
            msa1: raw(ack, 'MSA.1'),
            msa2: raw(ack, 'MSA.2'),
            msa3: raw(ack, 'MSA.3'),
            err: raw(ack, 'ERR.2'),
            ack: ack.toString(),
            ms: Math.round(ms * 100) / 100,
            attempt,
            connection: connectionNumber,
          });
          if (opt['connection-per-message']) {
            link.close();
            link = null;
          }
          break;
        } catch (err) {
          if (link) link.close();
          link = null;
          totals.failedAttempts++;
          const failure = { seq: item.seq, control_id: item.controlId, error: err.message, attempt };
          emit({ type: 'failed', ...failure, connection: connectionNumber });
          if (!opt.resend || attempt >= opt.maxAttempts || Date.now() > deadline) {
            totals.gaveUp++;
            emit({ type: 'gave_up', seq: item.seq, control_id: item.controlId, attempts: attempt });
            break;
          }
          await sleep(Math.min(1000, 50 * 2 ** Math.min(attempt - 1, 5)));
        }
      }
    }
    if (link) link.close();
  }

  await Promise.all(Array.from({ length: opt.connections }, (_, number) => worker(number)));
  const elapsed = (Date.now() - started) / 1000;
  const sorted = latencies.sort((a, b) => a - b);
  emit({
    type: 'summary',
    messages: messages.length,
    acknowledged: totals.acknowledged,
    gave_up: totals.gaveUp,
    attempts: totals.attempts,
    failed_attempts: totals.failedAttempts,
    connections: opt.connections,
    elapsed_s: elapsed,
    per_s: elapsed ? Math.round((totals.acknowledged / elapsed) * 10) / 10 : 0,
    ack_ms: { p50: percentile(sorted, 0.5), p95: percentile(sorted, 0.95), max: percentile(sorted, 1) },
  });
  return totals.gaveUp ? 1 : 0;
}

run().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`sender: ${err.stack || err}\n`);
    process.exitCode = 2;
  },
);
