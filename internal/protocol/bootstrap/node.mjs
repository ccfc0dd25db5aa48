// Node.js bootstrap for sandbox file handlers (handler protocol, DESIGN
// section 6). The engine runs `node [flags] node.mjs` with the protocol
// socket as fd 3 (SANDBOX_IPC_FD) and the plugin root mounted at /plugin.
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
//     data); any other number -> HANDLER_EXIT_CODE; anything else -> ok with
//     the value as data;
//   - a thrown error keeps a string `code` (else HANDLER_ERROR) and stack;
//   - an uncaught exception or unhandled rejection sends HANDLER_CRASHED
//     (when no result was sent yet) and exits 1: a crash is a crash whether
//     or not the result was already out, which is what the parent's
//     "crash after result" rule also says;
//   - after the result: flush, exit 0.
// Cancellation ({"type":"cancel"} or SIGTERM, which the sandbox sends with
// it) aborts ctx.signal; the handler may still return within the grace.

import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import util from 'node:util';
import { pathToFileURL } from 'node:url';

const LEVELS = new Set(['debug', 'info', 'warn', 'error']);
const fdNum = Number(process.env.SANDBOX_IPC_FD || 3);
const sock = new net.Socket({ fd: fdNum, readable: true, writable: true });
const controller = new AbortController();
let maxBytes = 16 << 20;
let resultSent = false;
let exiting = false; // the result is being written
let exitCode = 0;

function send(obj) {
  if (exiting) return;
  sock.write(JSON.stringify(obj) + '\n');
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
  sock.write(line + '\n');
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
  sock.write(line + '\n', () => process.exit(exitCode));
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
    value = isCommand ? await fn(ctx, Array.isArray(ac.argv) ? ac.argv : [], ac.flags && typeof ac.flags === 'object' ? ac.flags : {}) : await fn(msg.input === undefined ? null : msg.input, ctx);
  } catch (err) {
    return finish(errorResult(err, 'HANDLER_ERROR'), 0);
  }
  if (typeof value === 'number') {
    if (value === 0) return finish({ ok: true, data: null }, 0);
    return finish({ ok: false, error: { code: 'HANDLER_EXIT_CODE', message: `handler returned exit code ${value}`, stack: '' } }, 0);
  }
  let data;
  try {
    data = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    return finish({ ok: false, error: { code: 'HANDLER_ERROR', message: 'result is not JSON-serializable: ' + err.message, stack: '' } }, 0);
  }
  finish({ ok: true, data: data === undefined ? null : JSON.parse(data) }, 0);
}

// Read newline-delimited messages: run once, cancel any time.
let buf = '';
let started = false;
sock.setEncoding('utf8');
sock.on('data', (chunk) => {
  buf += chunk;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    if (line.trim() === '') continue;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      continue; // the parent never sends garbage; ignore rather than die
    }
    if (msg.type === 'cancel') {
      controller.abort(new Error('cancelled'));
    } else if (msg.type === 'run' && !started) {
      started = true;
      run(msg).catch(crash);
    }
  }
});
sock.on('end', () => {
  // The parent is gone: nobody can read a result any more.
  if (!started) process.exit(1);
});
sock.on('error', () => process.exit(1));

send({ type: 'ready' });
