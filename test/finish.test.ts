// The end of a bounded input fires every open window. The loop does so in steps of a
// bounded number of results (finishStep), so that each step's records and lines stay
// in memory already in use; the steps together must be exactly the one-shot finish():
// the same lines in the same order, the same windows purged, nothing left open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PartitionedOperator } from '../src/pipeline/partitioned';
import { resultParts, type Output } from '../src/pipeline/operator';
import { batchOfLines } from '../src/sources/lines';
import { rng } from '../bench/stats';
import { testConfig } from './helpers/run';

const cfg = testConfig({
  // Windows that fired stay in the state (allowed lateness): the finish purges them too.
  eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 2_000, allowedLatenessMs: 5_000 },
  aggregations: [
    { name: 'tumbling', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 1_000 } },
    { name: 'sliding', groupBy: ['k'], value: 'v', window: { type: 'sliding', sizeMs: 3_000, slideMs: 1_000 } },
    { name: 'sessions', groupBy: ['k'], value: 'v', window: { type: 'session', gapMs: 700 } },
  ],
});

/** The same events (three partitions, 40 keys, out of order by up to 1.5 s) into a fresh operator, not finished. */
function fed(): PartitionedOperator {
  const op = new PartitionedOperator(cfg, { clock: () => 1_000_000 });
  const rand = rng(7);
  const offsets = [0, 0, 0];
  for (let b = 0; b < 60; b++) {
    const p = b % 3;
    const lines: string[] = [];
    for (let i = 0; i < 50; i++) {
      const ts = 100_000 + b * 200 + Math.floor(rand() * 1_500);
      lines.push(JSON.stringify({ timestamp: ts, k: `k${p}-${Math.floor(rand() * 40)}`, v: Math.round(rand() * 1e4) / 10 }));
    }
    const out = op.process(batchOfLines(lines, p, offsets[p]));
    offsets[p]! += lines.length;
    for (const r of resultParts(out)) r.release();
  }
  return op;
}

function linesOf(out: Output): string[] {
  const lines: string[] = [];
  for (const r of resultParts(out)) for (let i = 0; i < r.n; i++) lines.push(r.json.toString('utf8', r.lineStarts[i], r.lineEnds[i]));
  return lines;
}

const openWindows = (op: PartitionedOperator): number => [0, 1, 2].reduce((n, a) => n + op.openWindows(a), 0);

test('finish in steps of at most n results: the one-shot finish, line for line, in its order', () => {
  const whole = fed();
  const open = openWindows(whole);
  const once = whole.finish();
  const want = linesOf(once);
  const wantGone = once.gone.map((g) => `${g.agg} ${g.key} ${g.start} ${g.end}`);
  assert.ok(want.length > 200, `${want.length} results at the end: too few to cut into steps`);
  assert.ok(open > want.length, `${open} open windows, ${want.length} of them fire: some had fired and are only purged`);
  assert.equal(openWindows(whole), 0);

  for (const n of [1, 7, 100, 1_000_000]) {
    const op = fed();
    const got: string[] = [], gone: string[] = [];
    let steps = 0, biggest = 0;
    for (let done = false; !done; steps++) {
      const s = op.finishStep(n);
      done = s.done;
      const lines = linesOf(s.out);
      biggest = Math.max(biggest, lines.length);
      got.push(...lines);
      for (const g of s.out.gone) gone.push(`${g.agg} ${g.key} ${g.start} ${g.end}`);
      assert.ok(steps < 100_000, 'finishStep never says done');
    }
    assert.deepEqual(got, want, `steps of ${n}`);
    assert.deepEqual(gone, wantGone, `steps of ${n}: the windows purged`);
    assert.equal(openWindows(op), 0, `steps of ${n}: windows left open`);
    // A step stops once it holds n results; a tumbling or sliding group (one end, every key) fires whole.
    if (n === 1) assert.ok(steps > want.length / 40, `${steps} steps for ${want.length} results`);
    if (n === 7) assert.ok(biggest <= 7 + 40, `a step of ${biggest} results`);
    if (n === 1_000_000) assert.ok(steps <= 4, `${steps} steps: one per partition, then done`);
  }
});

test('finish in steps, then events: W stays at the end, and nothing fires twice', () => {
  const op = fed();
  for (let done = false; !done; ) done = op.finishStep(5).done;
  assert.equal(op.watermarks.current, Infinity);
  const again = op.finishStep(5);
  assert.equal(again.done, true);
  assert.equal(again.out.results.n, 0);
});

test('sessions finish in steps of at most n results, however many are due together', () => {
  const sessionsOnly = testConfig({
    eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 2_000, allowedLatenessMs: 5_000 },
    aggregations: [{ name: 'sessions', groupBy: ['k'], value: 'v', window: { type: 'session', gapMs: 700 } }],
  });
  // 500 keys in one partition, each with one open session at the end: all due together.
  const feed = (): PartitionedOperator => {
    const op = new PartitionedOperator(sessionsOnly, { clock: () => 1_000_000 });
    const lines = Array.from({ length: 500 }, (_, i) => JSON.stringify({ timestamp: 100_000 + (i % 50), k: `k${i}`, v: i }));
    for (const r of resultParts(op.process(batchOfLines(lines, 0, 0)))) r.release();
    return op;
  };
  const want = linesOf(feed().finish());
  assert.equal(want.length, 500);
  for (const n of [1, 7, 31, 33, 100]) {
    const op = feed();
    const got: string[] = [];
    for (let done = false, steps = 0; !done; steps++) {
      const s = op.finishStep(n);
      done = s.done;
      const lines = linesOf(s.out);
      assert.ok(lines.length <= n, `steps of ${n}: a step of ${lines.length} results`);
      got.push(...lines);
      assert.ok(steps < 10_000, 'finishStep never says done');
    }
    assert.deepEqual(got, want, `steps of ${n}`);
  }
});
