// A partition this instance loses and gets back (a rebalance, a consumer restarted
// after a broker restart) while its other partitions stay: its input is read again
// from its last committed checkpoint, or from the start when none committed, and it
// must give what it gave the first time. The W the other partitions reached since
// must not make its events late.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Checkpointer, type CheckpointSource } from '../src/checkpoint/coordinator';
import { validateConfig } from '../src/config';
import { createLogger } from '../src/log';
import { Instrumentation } from '../src/metrics/events';
import { PartitionedOperator } from '../src/pipeline/partitioned';
import type { Output } from '../src/pipeline/operator';
import type { RecordBatch } from '../src/pipeline/types';
import { openStateBackend } from '../src/state';

const T0 = 1_767_225_600_000;

/** Partition p's records from `offset`: record o at T0 + ts ms, key `key-p-(o % keys)`, a value of o. */
function batchOf(p: number, offset: number, ts: readonly number[], keys = 5): RecordBatch {
  const parts = ts.map((t, i) => Buffer.from(`{"timestamp":${T0 + t},"k":"key-${p}-${(offset + i) % keys}","v":${((offset + i) * 7919) % 1000}}`));
  const starts = new Uint32Array(parts.length), ends = new Uint32Array(parts.length);
  let pos = 0;
  parts.forEach((b, i) => {
    starts[i] = pos;
    ends[i] = pos += b.length;
  });
  return { buf: Buffer.concat(parts), starts, ends, n: parts.length, partition: p, firstOffset: offset };
}

/** The last result of each window (its final), sorted. */
function finals(results: readonly string[]): string[] {
  const last = new Map<string, string>();
  for (const r of results) {
    const o = JSON.parse(r) as { name: string; key: string; window: { start: number; end: number } };
    last.set(`${o.name}|${o.key}|${o.window.start}|${o.window.end}`, r);
  }
  return [...last.values()].sort();
}

/** The results and dead letters of outputs, as comparable text. */
function seen(outs: readonly Output[]): { results: string[]; late: number; deadLetters: string[] } {
  const results: string[] = [];
  const deadLetters: string[] = [];
  let late = 0;
  for (const o of outs) {
    for (const r of o.results.toObjects()) results.push(JSON.stringify({ ...r, emittedAt: 0 }));
    for (const d of o.deadLetters) deadLetters.push(`${d.reason} ${d.partition}:${d.offset}`);
    for (const l of o.late) late += l;
  }
  return { results, late, deadLetters };
}

for (const [lose, checkpointFirst] of [[[0], false], [[0], true], [[0, 1], false], [[0, 1], true]] as const) {
  test(`${lose.length === 1 ? 'a partition' : 'every partition (a consumer restarted)'} revoked and assigned again reads its input again against the W of its state, not the W reached since (${checkpointFirst ? 'from its last checkpoint' : 'no checkpoint committed: from the start'})`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-rebalance-'));
    try {
      const cfg = validateConfig({
        source: { type: 'kafka', brokers: ['127.0.0.1:9'], topic: 'events', groupId: 'g' },
        eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 1000, allowedLatenessMs: 0 },
        aggregations: [
          { name: 'per_second', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 1000 } },
          { name: 'sessions', groupBy: ['k'], value: 'v', window: { type: 'session', gapMs: 1500 } },
        ],
        state: { backend: 'memory' },
        checkpoint: { dir: join(dir, 'checkpoints') },
        changelog: { enabled: false },
        processing: { instanceId: 'test' },
      });
      const positions = new Map<number, string>();
      const source: CheckpointSource = {
        startInfo: (p) => ({ committed: undefined, low: '0', position: positions.get(p) ?? '0' }),
        seek: (p, offset) => (positions.set(p, offset), true),
        commit: async () => {},
        assignment: [0, 1],
        pastNonRecords: (_p, offset) => offset,
      };
      const op = new PartitionedOperator(cfg, { clock: () => 0 });
      const state = await openStateBackend(cfg.state, 'test');
      const ck = new Checkpointer(cfg, op, state, createLogger({ ...cfg, log: { ...cfg.log, level: 'error' } }), new Instrumentation(), () => T0);
      await ck.init();
      await ck.assign([0, 1], source);
      const run = (b: RecordBatch): Output => {
        const out = op.process(b, 0);
        ck.processed(b);
        return out;
      };
      // Partitions 0 and 1: four seconds of events each, 100 ms apart; partition 0's in two batches.
      const p0 = Array.from({ length: 40 }, (_, i) => i * 100);
      const outs = [run(batchOf(0, 0, p0.slice(0, 10)))];
      if (checkpointFirst) assert.ok(await ck.checkpoint(source, 'test'));
      outs.push(run(batchOf(0, 10, p0.slice(10))));
      outs.push(run(batchOf(1, 0, p0.map((t) => t + 50))));
      assert.ok(op.watermarks.current - T0 > 2000, `W ${op.watermarks.current - T0}`);
      // Lost with nothing committed since (the revoke's checkpoint could not commit), and back.
      for (const p of lose) await ck.revoke(p);
      await ck.assign(lose, source);
      const from = Number(positions.get(0) ?? '0');
      assert.equal(from, checkpointFirst ? 10 : 0);
      const again = [run(batchOf(0, from, p0.slice(from)))];
      if (lose.length > 1) {
        const from1 = Number(positions.get(1) ?? '0');
        again.push(run(batchOf(1, from1, p0.slice(from1).map((t) => t + 50))));
      }
      again.push(op.finish(0));
      const after = seen(again);
      assert.equal(after.late, 0, `events read again came back late: ${after.deadLetters.slice(0, 3).join(', ')}`);
      assert.deepEqual(after.deadLetters, []);
      // Partition 0's final windows are those of partition 0 read alone, once.
      const alone = new PartitionedOperator(cfg, { clock: () => 0 });
      const want = finals(seen([alone.process(batchOf(0, 0, p0.slice(0, 10)), 0), alone.process(batchOf(0, 10, p0.slice(10)), 0), alone.finish(0)]).results);
      assert.ok(want.length > 10, `${want.length} windows`);
      assert.deepEqual(finals(seen([...outs, ...again]).results.filter((r) => r.includes('key-0-'))), want);
      await ck.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
