// Test plugin for handler_linux_test.go: one export per behaviour.
import fs from 'node:fs';

export async function run(input, ctx) {
  ctx.log('info', `adding ${input.a} and ${input.b}`, { n: 2 });
  ctx.progress(50, 'half way');
  return {
    sum: input.a + input.b,
    seen: { workdir: ctx.workdir, outdir: ctx.outdir ?? null, pluginRoot: ctx.pluginRoot, requestId: ctx.requestId },
    ipcFd: process.env.SANDBOX_IPC_FD,
    traceparent: process.env.TRACEPARENT,
    execArgv: process.execArgv,
  };
}

export async function fail() {
  const err = new Error('boom');
  err.code = 'E_X';
  throw err;
}

export async function three() {
  return 3;
}

export async function hog() {
  const keep = [];
  for (;;) keep.push(new Array(1e5).fill(Math.random()));
}

export async function spin() {
  for (;;) {}
}

export async function noop() {
  return { ok: 1 };
}

// waitAbort reports that it is waiting, then leaves a file in /out once
// ctx.signal fires: the proof that cancellation reached the handler.
export async function waitAbort(input, ctx) {
  await new Promise((resolve) => {
    ctx.signal.addEventListener('abort', resolve);
    ctx.log('info', 'waiting for abort');
  });
  fs.writeFileSync('/out/aborted', 'aborted: ' + String(ctx.signal.reason));
  ctx.log('info', 'aborted');
  return { aborted: true };
}

// A command-style export: fn(ctx, argv, flags), as `--signature command`
// calls it.
export async function cli(ctx, argv, flags) {
  console.log(`argv=${JSON.stringify(argv)} flags=${JSON.stringify(flags)}`);
  return argv.length;
}
