// weir run with a PostgreSQL sink: the table ends up holding exactly the final
// result of every window, the same as the last line per window of a file sink.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { validateConfig } from '../src/config';
import { runEmbedded } from '../src/runner';
import { generateLines } from '../src/sources/eventgen';
import type { WindowResult } from '../src/pipeline/types';

const URL = process.env['WEIR_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

test('file source -> file and postgres sinks: the table holds exactly the final results', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-pg-e2e-'));
  const events = join(dir, 'events.jsonl');
  writeFileSync(events, generateLines(3000, { seed: 11, startMs: 1_767_225_600_000, eventsPerSecond: 20, lateFraction: 0.01 }).join('\n') + '\n');
  const table = `weir_e2e_${process.pid}_${Date.now()}`;
  const cfg = validateConfig({
    source: { type: 'file', path: events },
    eventTime: { maxOutOfOrdernessMs: 5000, allowedLatenessMs: 30_000 },
    aggregations: [
      { name: 'lat', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 60_000 } },
      { name: 'sess', groupBy: ['metadata.user_id'], value: 'data.tokens', window: { type: 'session', gapMs: 30_000 } },
    ],
    sinks: [{ type: 'file', path: join(dir, 'results.jsonl') }, { type: 'postgres', url: URL, table }],
    deadLetter: { type: 'file', path: join(dir, 'dlq.jsonl') },
  });
  await runEmbedded(cfg, { progress: false });
  const last = new Map<string, WindowResult>();
  for (const line of readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n')) {
    const r = JSON.parse(line) as WindowResult;
    last.set(`${r.name}|${r.key}|${r.window.start}|${r.window.end}`, r);
  }
  const pg = new Client({ connectionString: URL });
  await pg.connect();
  try {
    const { rows } = await pg.query<{ name: string; key: string; window_start: string; window_end: string; count: number; sum: number; p99: number; late: boolean }>(
      `SELECT name, key, window_start, window_end, count, sum, p99, late FROM "${table}"`,
    );
    assert.equal(rows.length, last.size);
    for (const row of rows) {
      const want = last.get(`${row.name}|${row.key}|${row.window_start}|${row.window_end}`);
      assert.ok(want, `row ${row.name} ${row.key} ${row.window_start} has a result`);
      assert.equal(row.count, want.results.count);
      assert.equal(row.sum, want.results.sum);
      assert.equal(row.p99, want.results.p99);
      assert.equal(row.late, want.late);
    }
    await pg.query(`DROP TABLE "${table}"`);
  } finally {
    await pg.end();
  }
});
