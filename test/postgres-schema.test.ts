// A PostgreSQL table that cannot take Weir's rows stops the run with one line naming the
// table and the column, at start and when the table changes under a running sink.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PostgresResultSink, TableSchemaError } from '../src/sinks/postgres';
import { RecordsRejectedError, WeirError } from '../src/errors/errors';
import { PG_URL, dropTables, freshTable, query, result, rowSummary, tableDdl } from './helpers/pg';
import { batches } from './helpers/results';

const tables: string[] = [];
after(() => dropTables(tables));

const root = join(__dirname, '..', '..');
const bin = join(root, 'bin', 'weir.js');

/** `weir run` over a few events into `table`; its exit code, stderr and dead letters. */
function runInto(table: string): { code: number | null; err: string; deadLetters: string } {
  const dir = mkdtempSync(join(tmpdir(), 'weir-pgschema-'));
  const T = 1_704_110_400_000;
  const events = [0, 1000, 12_000, 25_000].map((dt, i) => JSON.stringify({ id: `e${i}`, timestamp: T + dt, data: { model: 'm', latency_ms: 10 + i } }));
  writeFileSync(join(dir, 'events.jsonl'), events.join('\n') + '\n');
  const cfg = join(dir, 'weir.yaml');
  writeFileSync(
    cfg,
    `source: { type: file, path: ${join(dir, 'events.jsonl')} }
eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 }
aggregations: [ { name: latency, groupBy: [data.model], value: data.latency_ms, window: { type: tumbling, sizeMs: 10s } } ]
sinks: [ { type: postgres, url: "${PG_URL}", table: ${table} } ]
deadLetter: { type: file, path: ${join(dir, 'dlq.jsonl')} }
retry: { retries: 0 }
`,
  );
  const r = spawnSync(process.execPath, [bin, 'run', '--config', cfg, '--no-progress'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  const dlq = join(dir, 'dlq.jsonl');
  return { code: r.status, err: r.stderr, deadLetters: existsSync(dlq) ? readFileSync(dlq, 'utf8') : '' };
}

function assertOneLine(err: string, ...parts: RegExp[]): void {
  const lines = err.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line, no stack trace:\n${err}`);
  for (const p of parts) assert.match(lines[0]!, p);
}

for (const [what, change, column, advice] of [
  ['an integer window_start', (c: string[]) => c.map((s) => s.replace('window_start bigint', 'window_start int4')), 'window_start', /window_start is integer, which cannot hold epoch milliseconds; use bigint/],
  ['a missing column', (c: string[]) => c.filter((s) => !s.startsWith('p99 ')), 'p99', /column p99 is missing; add it: ALTER TABLE "\w+" ADD COLUMN p99 double precision/],
  ['an extra NOT NULL column', (c: string[]) => [...c, 'tenant text NOT NULL'], 'tenant', /column tenant is NOT NULL without a default, and weir does not write it/],
] as const) {
  test(`weir run into a table with ${what} fails at once with one line naming the table and ${column}`, async () => {
    const table = freshTable(tables);
    await query(tableDdl(table, change));
    const t0 = Date.now();
    const r = runInto(table);
    assert.equal(r.code, 1, r.err);
    assertOneLine(r.err, new RegExp(`postgres sink table ${table}\\b`), advice);
    assert.equal(r.deadLetters.trim(), '', 'nothing dead-lettered: the run stopped');
    assert.ok(Date.now() - t0 < 20_000);
    assert.deepEqual(await rowSummary(table).catch(() => []), []);
  });
}

test('the sink names the column and what to change when the table changes after it opened', async () => {
  const T = 1_704_110_400_000;
  for (const [alter, advice] of [
    ['ALTER COLUMN window_end TYPE integer', /column window_end is integer, which cannot hold epoch milliseconds; use bigint/],
    ['ADD COLUMN tenant text NOT NULL', /column tenant is NOT NULL without a default/],
    ['DROP COLUMN late', /column late is missing/],
    ['ALTER COLUMN grp TYPE integer USING 0', /column grp is integer, which cannot hold the group as JSON; use jsonb/],
  ] as const) {
    const table = freshTable(tables);
    const sink = await PostgresResultSink.open({ url: PG_URL, table });
    try {
      await query(`ALTER TABLE "${table}" ${alter}`);
      await assert.rejects(sink.write(batches([result('a', 'm', T, 1000, 1), result('a', 'n', T, 1000, 2)])), (e: unknown) => {
        assert.ok(e instanceof TableSchemaError, String(e));
        assert.ok(!(e instanceof RecordsRejectedError));
        assert.equal(e.domain, 'user');
        assert.equal(e.retriable, false);
        assert.match(e.message, new RegExp(`postgres sink table ${table} \\(127\\.0\\.0\\.1:5432/test\\): `));
        assert.match(e.message, advice);
        return true;
      });
    } finally {
      await sink.close();
    }
  }
});

test('a dropped table is a schema error too; a refused row is still a refusal of that row', async () => {
  const T = 1_704_110_400_000;
  const table = freshTable(tables);
  const sink = await PostgresResultSink.open({ url: PG_URL, table });
  try {
    // A CHECK constraint refusing one row: only that row is refused, the others go in one by one.
    await query(`ALTER TABLE "${table}" ADD CONSTRAINT few CHECK (count < 100)`);
    await assert.rejects(sink.write(batches([result('a', 'm', T, 1000, 1), result('a', 'n', T, 1000, 500)])), (e: unknown) => {
      assert.ok(e instanceof RecordsRejectedError, String(e));
      assert.match(e.message, /few/);
      return true;
    });
    await sink.write(batches([result('a', 'm', T, 1000, 1)]));
    assert.equal((await rowSummary(table)).length, 1);

    await query(`DROP TABLE "${table}"`);
    await assert.rejects(sink.write(batches([result('a', 'm', T, 1000, 2)])), (e: unknown) => {
      assert.ok(e instanceof TableSchemaError, String(e));
      assert.match(e.message, new RegExp(`postgres sink table ${table} .*: the table does not exist`));
      return true;
    });
  } finally {
    await sink.close();
  }
});

test('open() on a table without the unique key the upsert needs fails naming it', async () => {
  const table = freshTable(tables);
  await query(tableDdl(table, (c) => c.filter((s) => !s.startsWith('PRIMARY KEY')).concat('PRIMARY KEY (name, key, window_start)')));
  await assert.rejects(PostgresResultSink.open({ url: PG_URL, table }), (e: unknown) => {
    assert.ok(e instanceof WeirError && e.domain === 'user', String(e));
    assert.match(e.message, /no primary key or unique index on \(name, key, window_start, window_end\)/);
    return true;
  });
  // The same columns under a unique index (not a primary key) do.
  const ok = freshTable(tables);
  await query(tableDdl(ok, (c) => c.filter((s) => !s.startsWith('PRIMARY KEY'))));
  await query(`CREATE UNIQUE INDEX ON "${ok}" (window_end, window_start, key, name)`);
  const sink = await PostgresResultSink.open({ url: PG_URL, table: ok });
  await sink.write(batches([result('a', 'm', 0, 1000, 3)]));
  await sink.close();
  assert.deepEqual(await rowSummary(ok), [['a', 'model=m', 0, 3, 2000]]);
});
