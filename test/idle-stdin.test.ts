// eventTime.idleAdvance on an unbounded embedded source: stdin that stays open and
// quiet still fires its windows (ticks move W), and does not without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');
const bin = join(root, 'bin', 'weir.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function resultsIn(file: string): number {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').length : 0;
}

async function quietStdin(idleAdvance: boolean, waitMs: number): Promise<{ results: number; exit: number | null }> {
  const dir = mkdtempSync(join(tmpdir(), 'weir-idle-stdin-'));
  const out = join(dir, 'results.jsonl');
  const cfg = join(dir, 'weir.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      source: { type: 'stdin', idleTimeoutMs: 1000 },
      eventTime: { maxOutOfOrdernessMs: 1000, allowedLatenessMs: 0, idleAdvance },
      aggregations: [{ name: 'lat', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 10_000 } }],
      sinks: [{ type: 'file', path: out }],
      deadLetter: { type: 'file', path: join(dir, 'dlq.jsonl') },
    }),
  );
  const child = spawn(process.execPath, [bin, 'run', '--config', cfg], { stdio: ['pipe', 'ignore', 'pipe'] });
  const base = Math.floor((Date.now() - 60_000) / 10_000) * 10_000;
  const lines = [];
  for (let i = 0; i < 20; i++) lines.push(JSON.stringify({ timestamp: base + i * 1000, data: { model: 'a', latency_ms: i } }));
  child.stdin.write(lines.join('\n') + '\n');
  // The events close the first window: from then on stdin is quiet (start-up under load takes a while).
  const started = Date.now() + 30_000;
  while (Date.now() < started && resultsIn(out) < 1) await sleep(50);
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline && resultsIn(out) < 2) await sleep(100);
  const results = resultsIn(out);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.stdin.end();
  return { results, exit: await exited };
}

test('idleAdvance on stdin: an open, quiet stdin fires its windows after idleTimeoutMs; off, the last one waits for the end of the input', async () => {
  // idleTimeoutMs (1 s) + a tick (1 s) + a margin after the events were processed.
  const [on, off] = await Promise.all([quietStdin(true, 5000), quietStdin(false, 5000)]);
  assert.equal(on.results, 2, 'both 10 s windows fired while stdin stayed open');
  assert.equal(off.results, 1, 'without idleAdvance W stalls: the events closed the first window only');
  assert.equal(on.exit, 0);
  assert.equal(off.exit, 0);
});
