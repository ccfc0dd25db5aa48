// Node.js bootstrap for sandbox file handlers (docs/handler-protocol.md).
// The engine runs `node [flags] node.mjs` with the protocol socket as fd 3
// (SANDBOX_IPC_FD) and the plugin root mounted at /plugin.
//
// Contract (kept in sync with internal/protocol/doc.go):
//   - sends ready first, then waits for run;
//   - resolves handler.file as dist/<file>.js, <file>.js, <file> under the
//     plugin root (handler.root, else $SANDBOX_PLUGIN_ROOT, else /plugin);
//     a file outside the root, or a missing file or export, is
//     HANDLER_NOT_FOUND;
//   - calls the export (default "run") as fn(input, ctx), or
//     fn(ctx, argv, flags) for a cli command;
//   - console.* becomes log messages and is not written to stdout/stderr;
//   - returns: 0 -> ok with data null (the number is an exit status, not
//     data); any other number -> HANDLER_EXIT_CODE with exitCode, and the
//     process exits with that code; anything else -> ok with the value as
//     data;
//   - a thrown error keeps a string `code` (else HANDLER_ERROR) and stack;
//   - an uncaught exception or unhandled rejection sends HANDLER_CRASHED
//     (when no result was sent yet) and exits 1: a crash is a crash whether
//     or not the result was already out, which is what the parent's
//     "crash after result" rule also says;
//   - after the result: flush, exit 0.
// Cancellation ({"type":"cancel"} or SIGTERM, which the sandbox sends with
// it) aborts ctx.signal; the handler may still return within the grace.

import fs from 'node:fs';
import path from 'node:path';
import util from 'node:util';
import { pathToFileURL } from 'node:url';

const LEVELS = new Set(['debug', 'info', 'warn', 'error']);
const fdNum = Number(process.env.SANDBOX_IPC_FD || 3);
// Until the handler has been called, the socket is used synchronously:
// ready and the run message need no event loop, and loading net (with
// its streams) would cost every run a few milliseconds. Once the handler
// runs, sock (a net.Socket, loaded then) takes over: it reads cancel and
// writes without blocking the handler. A handler that returns at once is
// done before that.
let sock = null;
const controller = new AbortController();
let maxBytes = 16 << 20;
let resultSent = false;
let exiting = false; // the result is being written
let exitCode = 0;

function send(obj) {
  if (exiting) return;
  writeLine(JSON.stringify(obj), null);
}

// writeLine writes one line, in order with every line before it: through
// sock once it exists, else synchronously on the (still blocking) socket.
// done, if given, is called once the line is out.
function writeLine(line, done) {
  if (sock) {
    sock.write(line + '\n', done || undefined);
    return;
  }
  const b = Buffer.from(line + '\n');
  for (let off = 0; off < b.length; ) {
    try {
      off += fs.writeSync(fdNum, b, off);
    } catch (e) {
      if (e.code === 'EINTR' || e.code === 'EAGAIN') continue;
      process.exit(1); // the parent is gone
    }
  }
  if (done) done();
}

function sendLog(level, message, meta) {
  if (resultSent) return; // nothing may follow the result
  let msg = { type: 'log', level, message: String(message) };
  if (meta !== undefined && meta !== null) {
    msg.meta = meta;
  }
  let line;
  try {
    line = JSON.stringify(msg);
  } catch (e) {
    msg.meta = { metaError: 'meta is not JSON-serializable: ' + e.message };
    line = JSON.stringify(msg);
  }
  if (Buffer.byteLength(line) + 1 > maxBytes) {
    // Never send a line the parent must reject: cut the text so that even
    // fully escaped (6 bytes a character) it fits.
    msg = { type: 'log', level, message: msg.message.slice(0, Math.floor(maxBytes / 8)) + ' [truncated]' };
    line = JSON.stringify(msg);
  }
  writeLine(line, null);
}

function finish(result, code) {
  if (resultSent) return;
  resultSent = true;
  let line = JSON.stringify({ type: 'result', ...result });
  if (Buffer.byteLength(line) + 1 > maxBytes) {
    line = JSON.stringify({
      type: 'result', ok: false,
      error: { code: 'HANDLER_ERROR', message: `result is ${Buffer.byteLength(line)} bytes, over the protocol limit of ${maxBytes}`, stack: '' },
    });
  }
  exiting = true;
  exitCode = code;
  writeLine(line, () => process.exit(exitCode));
}

function errorResult(err, fallbackCode) {
  const isObj = err !== null && typeof err === 'object';
  const code = isObj && typeof err.code === 'string' && err.code !== '' ? err.code : fallbackCode;
  const message = isObj && typeof err.message === 'string' ? err.message : String(err);
  const stack = isObj && typeof err.stack === 'string' ? err.stack : '';
  return { ok: false, error: { code, message, stack } };
}

// crash handles an uncaught exception or unhandled rejection: the run is
// HANDLER_CRASHED (the error's own code goes into the message) and the
// process exits 1, whether or not the result was already sent.
function crash(err) {
  if (resultSent) {
    // Still flushing the result: let it out, then exit 1 (the parent reads
    // "result, then crash" as HANDLER_CRASHED).
    process.stderr.write('sandbox bootstrap: crash after the result: ' + util.inspect(err) + '\n');
    exitCode = 1;
    return;
  }
  const r = errorResult(err, 'HANDLER_CRASHED');
  if (r.error.code !== 'HANDLER_CRASHED') r.error.message = `[${r.error.code}] ${r.error.message}`;
  r.error.code = 'HANDLER_CRASHED';
  r.error.message = 'uncaught exception: ' + r.error.message;
  finish(r, 1);
}

process.on('uncaughtException', crash);
process.on('unhandledRejection', crash);
process.on('SIGTERM', () => controller.abort(new Error('cancelled')));

for (const [name, level] of [['log', 'info'], ['info', 'info'], ['warn', 'warn'], ['error', 'error'], ['debug', 'debug'], ['trace', 'debug']]) {
  console[name] = (...args) => sendLog(level, util.format(...args));
}

function resolveHandler(root, file) {
  if (typeof file !== 'string' || file === '') return null;
  const base = path.resolve(root);
  for (const rel of ['dist/' + file + '.js', file + '.js', file]) {
    const p = path.resolve(base, rel);
    if (p !== base && !p.startsWith(base + path.sep)) continue; // outside the root
    try {
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // try the next candidate
    }
  }
  return null;
}

function notFound(message) {
  finish({ ok: false, error: { code: 'HANDLER_NOT_FOUND', message, stack: '' } }, 0);
}

async function run(msg) {
  if (Number.isInteger(msg.maxMessageBytes) && msg.maxMessageBytes > 0) maxBytes = msg.maxMessageBytes;
  const handler = msg.handler || {};
  const context = msg.context && typeof msg.context === 'object' ? msg.context : {};
  const root = handler.root || process.env.SANDBOX_PLUGIN_ROOT || '/plugin';
  const exportName = handler.export || 'run';
  const file = resolveHandler(root, handler.file);
  if (!file) return notFound(`handler file ${JSON.stringify(handler.file)} not found under the plugin root`);

  let mod;
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (err) {
    return finish(errorResult(err, 'HANDLER_ERROR'), 0);
  }
  let fn = mod[exportName];
  if (typeof fn !== 'function' && exportName !== 'default' && mod.default && typeof mod.default === 'object') {
    fn = mod.default[exportName]; // a CommonJS module's exports
  }
  if (typeof fn !== 'function') return notFound(`export ${JSON.stringify(exportName)} is not a function in ${JSON.stringify(handler.file)}`);

  const ctx = {
    ...context,
    signal: controller.signal,
    log(level, message, meta) {
      if (!LEVELS.has(level)) throw new TypeError(`ctx.log: level must be one of debug|info|warn|error, got ${JSON.stringify(level)}`);
      if (meta !== undefined && meta !== null && (typeof meta !== 'object' || Array.isArray(meta))) throw new TypeError('ctx.log: meta must be an object');
      sendLog(level, message, meta);
    },
    progress(percent, message) {
      if (typeof percent !== 'number' || !(percent >= 0 && percent <= 100)) throw new RangeError(`ctx.progress: percent must be a number in 0..100, got ${percent}`);
      if (resultSent) return;
      const m = { type: 'progress', percent };
      if (message !== undefined && message !== null) m.message = String(message).slice(0, Math.floor(maxBytes / 8));
      send(m);
    },
  };

  const ac = context.adapterContext;
  const isCommand = context.adapterMeta && context.adapterMeta.signature === 'command' && ac && ac.type === 'cli';
  let value;
  try {
    const pending = isCommand ? fn(ctx, Array.isArray(ac.argv) ? ac.argv : [], ac.flags && typeof ac.flags === 'object' ? ac.flags : {}) : fn(msg.input === undefined ? null : msg.input, ctx);
    // The handler runs now: listen for cancel once it yields to the event
    // loop (a handler that settles in its first microtasks never needs to).
    setImmediate(listen);
    value = await pending;
  } catch (err) {
    return finish(errorResult(err, 'HANDLER_ERROR'), 0);
  }
  if (typeof value === 'number') {
    if (value === 0) return finish({ ok: true, data: null }, 0);
    // The process exits with the code, as the tool it stands for would
    // (an exit status is 1..255; anything else exits 1).
    const code = Number.isInteger(value) && value >= 1 && value <= 255 ? value : 1;
    return finish({ ok: false, exitCode: code, error: { code: 'HANDLER_EXIT_CODE', message: `handler returned exit code ${value}`, stack: '' } }, code);
  }
  let data;
  try {
    data = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    return finish({ ok: false, error: { code: 'HANDLER_ERROR', message: 'result is not JSON-serializable: ' + err.message, stack: '' } }, 0);
  }
  finish({ ok: true, data: data === undefined ? null : JSON.parse(data) }, 0);
}

// Messages from the parent: run once (read synchronously, first), then
// cancel any time (read by sock). Lines are split on the byte 10, which
// never occurs inside a multi-byte UTF-8 character; the pieces of a line
// are joined once it is complete (a run message may be megabytes).
let parts = [];
let started = false;

function feed(bytes) {
  let start = 0;
  let i;
  while ((i = bytes.indexOf(10, start)) >= 0) {
    parts.push(bytes.subarray(start, i));
    const line = (parts.length === 1 ? parts[0] : Buffer.concat(parts)).toString('utf8');
    parts = [];
    start = i + 1;
    onLine(line);
  }
  if (start < bytes.length) parts.push(bytes.subarray(start));
}

function onLine(line) {
  if (line.trim() === '') return;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return; // the parent never sends garbage; ignore rather than die
  }
  if (msg.type === 'cancel') {
    controller.abort(new Error('cancelled'));
  } else if (msg.type === 'run' && !started) {
    started = true;
    run(msg).catch(crash);
  }
}

// readRun blocks until the run message is in; the parent sends it as soon
// as it reads ready, and if it goes away instead there is nothing to do.
function readRun() {
  const chunk = Buffer.alloc(64 << 10);
  while (!started) {
    let n;
    try {
      n = fs.readSync(fdNum, chunk, 0, chunk.length, null);
    } catch (e) {
      if (e.code === 'EINTR' || e.code === 'EAGAIN') continue;
      process.exit(1);
    }
    if (n === 0) process.exit(1); // the parent is gone
    feed(Buffer.from(chunk.subarray(0, n))); // chunk is reused
  }
}

// listen hands the socket to net for the rest of the run, for cancel.
async function listen() {
  if (sock || exiting) return;
  const { default: net } = await import('node:net');
  if (sock || exiting) return;
  sock = new net.Socket({ fd: fdNum, readable: true, writable: true });
  sock.on('data', feed);
  sock.on('error', () => process.exit(1));
}

send({ type: 'ready' });
readRun();
