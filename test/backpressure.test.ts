// A slow sink against the pipelined loop, with the real PostgreSQL: a table locked by
// another transaction holds the run back only once that sink's queue is full; the
// other sink gets its results meanwhile; once the lock goes, nothing is lost or out
// of order, and the queue's metric shows what happened.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { validateConfig } from '../src/config';
import { Instrumentation } from '../src/metrics/events';
import { runEmbedded } from '../src/runner';
import { generateLines } from '../src/sources/eventgen';
import type { WindowResult } from '../src/pipeline/types';
import { PG_URL } from './helpers/pg';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('a PostgreSQL table locked mid-run: the loop waits only once the queue is full, then everything arrives, in order', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-backpressure-'));
  const events = join(dir, 'events.jsonl');
  // Sessions per user: about one result per few events.
  writeFileSync(events, generateLines(20_000, { seed: 5, startMs: 1_767_225_600_000, eventsPerSecond: 50, users: 2000 }).join('\n') + '\n');
  const table = `weir_bp_${process.pid}_${Date.now()}`;
  const MAX = 200;
  const cfg = validateConfig({
    source: { type: 'file', path: events },
    eventTime: { maxOutOfOrdernessMs: 1000, allowedLatenessMs: 0 },
    aggregations: [{ name: 'sess', groupBy: ['metadata.user_id'], value: 'data.tokens', window: { type: 'session', gapMs: 2_000 } }],
    sinks: [{ type: 'file', path: join(dir, 'results.jsonl') }, { type: 'postgres', url: PG_URL, table, maxInFlightRecords: MAX }],
    deadLetter: { type: 'file', path: join(dir, 'dlq.jsonl') },
    processing: { batchSize: 256 },
  });
  // A run over no events creates the table (the sink does at open).
  writeFileSync(join(dir, 'none.jsonl'), '');
  await runEmbedded({ ...cfg, source: { type: 'file', path: join(dir, 'none.jsonl') } }, { progress: false });
  const bus = new Instrumentation();
  let records = 0, peak = 0, level = 0;
  bus.on('batch.processed', (e) => (records += e.records));
  bus.on('sink.queue', (e) => {
    if (e.sink !== 'sinks[1]') return;
    level = e.records;
    peak = Math.max(peak, e.records);
  });
  const locker = new Client({ connectionString: PG_URL });
  await locker.connect();
  try {
    // The table is locked before the run: its first write waits, and the queue fills behind it.
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE "${table}" IN EXCLUSIVE MODE`);
    const run = runEmbedded(cfg, { progress: false, bus });
    await sleep(1500);
    const stalledAt = records;
    await sleep(500);
    assert.equal(records, stalledAt, 'the loop waits while the queue is full');
    assert.ok(level >= MAX, `the queue is full (${level} of ${MAX})`);
    assert.ok(records < 20_000, 'the run did not get past the lock');
    assert.ok(records > 0, 'the run got going before the queue filled');
    const fileLines = readFileSync(join(dir, 'results.jsonl'), 'utf8').split('\n').length - 1;
    assert.ok(fileLines >= MAX, `the file sink got results meanwhile (${fileLines})`);
    await locker.query('COMMIT');
    const summary = await run;
    assert.equal(summary.records, 20_000);
    const dead = readFileSync(join(dir, 'dlq.jsonl'), 'utf8').trim().split('\n').filter((l) => l !== '');
    assert.ok(!dead.some((l) => l.includes('"undeliverable"')), 'nothing undeliverable');
    assert.equal(summary.deadLetters, dead.length);
    // At most one write past the limit: pushes are whole steps.
    assert.ok(peak < MAX + 1024, `queue peaked at ${peak}`);

    // The file sink's last line per window is each window's final result; the table holds exactly those.
    const last = new Map<string, WindowResult>();
    for (const line of readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n')) {
      const r = JSON.parse(line) as WindowResult;
      last.set(`${r.key}|${r.window.start}|${r.window.end}`, r);
    }
    const { rows } = await locker.query<{ key: string; window_start: string; window_end: string; count: number; sum: number }>(`SELECT key, window_start, window_end, count, sum FROM "${table}"`);
    assert.equal(rows.length, last.size);
    for (const row of rows) {
      const want = last.get(`${row.key}|${row.window_start}|${row.window_end}`);
      assert.ok(want !== undefined, `row ${row.key} ${row.window_start} has a result`);
      assert.equal(row.count, want.results.count, 'the last result written per window is its last firing');
      assert.equal(row.sum, want.results.sum);
    }
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.query(`DROP TABLE IF EXISTS "${table}"`).catch(() => undefined);
    await locker.end();
  }
});
