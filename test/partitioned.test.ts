// The operator over several partitions of a source: a key whose events come from two
// partitions is aggregated in each apart, and their results overwrite each other, so
// it is reported (the runner logs it): once per aggregation, naming the key and both
// partitions, and never for keys that each stay in one partition.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PartitionedOperator } from '../src/pipeline/partitioned';
import { resultParts } from '../src/pipeline/operator';
import { batchOfLines } from '../src/sources/lines';
import { testConfig } from './helpers/run';

const cfg = testConfig({
  eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 },
  aggregations: [
    { name: 't', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 1_000 } },
    { name: 's', groupBy: ['k'], value: 'v', window: { type: 'session', gapMs: 500 } },
  ],
});

function lines(keys: readonly string[], ts: number): string[] {
  return keys.map((k, i) => JSON.stringify({ timestamp: ts, k, v: i }));
}

test('a key from two partitions is reported once per aggregation, naming both; keys of one partition each are not', () => {
  const op = new PartitionedOperator(cfg, { clock: () => 0 });
  const reports: string[] = [];
  op.onSharedKey = (aggregation, key, [a, b]) => reports.push(`${aggregation} ${key} ${a} ${b}`);
  const mine = (p: number): string[] => Array.from({ length: 3_000 }, (_, i) => `p${p}-${i}`);
  let offset = 0;
  const send = (p: number, keys: readonly string[], ts: number): number => {
    const out = op.process(batchOfLines(lines(keys, ts), p, offset));
    offset += keys.length;
    return out.results.n;
  };
  // Every window of these keys fires again and again (each second, a new one), in its own partition only.
  let fired = 0;
  for (let s = 0; s < 5; s++) for (const p of [0, 1]) fired += send(p, mine(p), s * 2_000);
  assert.ok(fired > 20_000, `${fired} results`);
  assert.deepEqual(reports, [], 'keys that stay in their partition');

  // Partition 1 now has events of one of partition 0's keys: once their windows fire there, it is reported.
  send(1, ['p0-7'], 10_000);
  for (const p of [0, 1]) send(p, mine(p), 12_000);
  assert.deepEqual(reports.sort(), ['s k=p0-7 0 1', 't k=p0-7 0 1']);
  // Once per aggregation: another shared key, and the same one again, say nothing new.
  send(1, ['p0-8', 'p0-7'], 14_000);
  for (const p of [0, 1]) send(p, mine(p), 16_000);
  assert.equal(reports.length, 2);
});

test('results of a step from several partitions come as one batch per partition, and joined when read as one', () => {
  const op = new PartitionedOperator(cfg, { clock: () => 0 });
  const a = ['a1', 'a2', 'a3'], b = ['b1', 'b2'];
  op.process(batchOfLines(lines(a, 0), 0, 0));
  op.process(batchOfLines(lines(b, 0), 1, 0));
  op.process(batchOfLines(lines(a, 5_000), 0, 3));
  // Partition 1 moves W past both partitions' first windows: each fires its own.
  const out = op.process(batchOfLines(lines(b, 5_000), 1, 2));
  const parts = resultParts(out);
  assert.equal(parts.length, 2, 'one batch per partition that fired');
  const texts = parts.flatMap((r) => Array.from({ length: r.n }, (_, i) => r.textOf(i)));
  assert.deepEqual(texts.map((t) => (JSON.parse(t) as { key: string }).key).sort(), ['k=a1', 'k=a1', 'k=a2', 'k=a2', 'k=a3', 'k=a3', 'k=b1', 'k=b1', 'k=b2', 'k=b2']);
  // Read as one batch, the same lines in the same order.
  const joined = out.results;
  assert.deepEqual(Array.from({ length: joined.n }, (_, i) => joined.textOf(i)), texts);
});
