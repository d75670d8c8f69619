// Mistakes in where things are (a directory as the input, an unreadable file, a
// read-only mount for the results, a metrics port in use) and a failing disk: `weir
// run` exits non-zero with one line naming the path or key and the cause, never a
// stack trace. The read-only cases use a real read-only bind mount, so they need
// root and mount(8); they are skipped, saying so, where that is not possible.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readOnlyDir } from './helpers/readonly';

const BIN = join(__dirname, '..', '..', 'bin', 'weir.js');
const NO_STACK = /^\s+at \S+ \(|^\s+at \//m;
const isRoot = process.getuid?.() === 0;

function config(dir: string, over: { source?: string; sink?: string; deadLetter?: string; metrics?: string } = {}): string {
  const file = join(dir, 'weir.yaml');
  writeFileSync(
    file,
    `
source: { type: file, path: ${over.source ?? join(dir, 'events.jsonl')} }
aggregations: [ { name: a, groupBy: [data.model], value: data.latency_ms, window: { type: tumbling, sizeMs: 1000 } } ]
sinks: [ { type: file, path: ${over.sink ?? join(dir, 'results.jsonl')} } ]
deadLetter: { type: file, path: ${over.deadLetter ?? join(dir, 'dlq.jsonl')} }
${over.metrics ?? ''}
`,
  );
  return file;
}

function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'weir-usererr-'));
  writeFileSync(join(dir, 'events.jsonl'), '{"timestamp": 1, "data": {"model": "m", "latency_ms": 1}}\n');
  return dir;
}

function weir(cfg: string, opts: { uid?: number } = {}): { code: number | null; err: string } {
  const r = spawnSync(process.execPath, [BIN, 'run', '--config', cfg, '--no-progress'], { encoding: 'utf8', ...(opts.uid === undefined ? {} : { uid: opts.uid, gid: opts.uid }) });
  return { code: r.status, err: r.stderr };
}

/** One line on stderr, matching `want`, no stack trace, a non-zero exit. */
function assertOneLine(r: { code: number | null; err: string }, want: RegExp): void {
  assert.notEqual(r.code, 0, r.err);
  assert.equal(r.err.trim().split('\n').length, 1, `one line: ${r.err}`);
  assert.match(r.err.trim(), want);
  assert.doesNotMatch(r.err, NO_STACK);
}


test('source.path is a directory: one line naming it (EISDIR)', () => {
  const dir = tmp();
  mkdirSync(join(dir, 'in'));
  assertOneLine(weir(config(dir, { source: join(dir, 'in') })), /^weir: cannot read input file .*\/in \(source\.path\): it is a directory, not a file \(EISDIR\)$/);
});

test('source.path cannot be read from (EIO): one line naming it', () => {
  // Reading /proc/self/mem at offset 0 (unmapped) fails with a real EIO.
  const dir = tmp();
  assertOneLine(weir(config(dir, { source: '/proc/self/mem' })), /^weir: cannot read input file \/proc\/self\/mem \(source\.path\): input\/output error: the disk or the file system failed \(EIO\)$/);
});

test('source.path is not readable by the user: one line naming it (EACCES)', (t) => {
  if (!isRoot) return t.skip('needs root to run weir as another user');
  const dir = tmp();
  chmodSync(dir, 0o777);
  chmodSync(join(dir, 'events.jsonl'), 0o000);
  assertOneLine(weir(config(dir), { uid: 65534 }), /^weir: cannot open input file .*events\.jsonl \(source\.path\): permission denied \(EACCES\)$/);
});

test('results file on a read-only file system: one line naming the path, whether its directory exists or not', (t) => {
  const ro = readOnlyDir('existing');
  if (typeof ro !== 'string') return t.skip(ro.skip);
  const dir = tmp();
  assertOneLine(weir(config(dir, { sink: join(ro, 'existing', 'results.jsonl') })), new RegExp(`^weir: cannot write sinks\\[0\\] results file ${ro}/existing/results\\.jsonl: read-only file system \\(EROFS\\)$`));
  // mkdir -p under a read-only mount fails with ENOENT: the message says read-only all the same.
  assertOneLine(weir(config(dir, { sink: join(ro, 'new', 'results.jsonl') })), new RegExp(`^weir: cannot create the directory of sinks\\[0\\] results file ${ro}/new/results\\.jsonl: read-only file system \\(${ro}\\)$`));
  assertOneLine(weir(config(dir, { deadLetter: join(ro, 'dlq.jsonl') })), new RegExp(`^weir: cannot write deadLetter file ${ro}/dlq\\.jsonl: read-only file system \\(EROFS\\)$`));
});

test('a file where the results directory should be: one line naming it', () => {
  const dir = tmp();
  writeFileSync(join(dir, 'file'), '');
  assertOneLine(weir(config(dir, { sink: join(dir, 'file', 'sub', 'results.jsonl') })), new RegExp(`^weir: cannot create the directory of sinks\\[0\\] results file .*: ${dir}/file is a file, not a directory$`));
});

test('metrics.port in use: one line naming the key and port', async () => {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  try {
    const dir = tmp();
    const r = await new Promise<{ code: number | null; err: string }>((resolve) => {
      // Asynchronous: the port's listener lives in this process.
      const child = spawn(process.execPath, [BIN, 'run', '--config', config(dir, { metrics: `metrics: { port: ${port} }` }), '--no-progress']);
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('close', (code) => resolve({ code, err }));
    });
    assertOneLine(r, new RegExp(`^weir: metrics\\.port ${port} is in use \\(EADDRINUSE on 127\\.0\\.0\\.1\\)`));
  } finally {
    server.close();
  }
});
