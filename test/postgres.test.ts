// The PostgreSQL result sink against the real server on 127.0.0.1:5432 (database `test`).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { PostgresResultSink } from '../src/sinks/postgres';
import { WeirError } from '../src/errors/errors';
import type { WindowResult } from '../src/pipeline/types';
import { batches } from './helpers/results';

const PG_URL = process.env['WEIR_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const tables: string[] = [];

function freshTable(): string {
  const t = `weir_results_${randomBytes(5).toString('hex')}`;
  tables.push(t);
  return t;
}

async function query<R extends Record<string, unknown>>(text: string, values: unknown[] = []): Promise<R[]> {
  const c = new Client({ connectionString: PG_URL });
  await c.connect();
  try {
    return (await c.query<R>(text, values)).rows;
  } finally {
    await c.end();
  }
}

after(async () => {
  for (const t of tables) await query(`DROP TABLE IF EXISTS "${t}"`);
});

function result(name: string, model: string, start: number, sizeMs: number, count: number, late = false, emittedAt = start + sizeMs + 1000): WindowResult {
  return {
    name,
    key: `model=${model}`,
    group: { model },
    window: { start, end: start + sizeMs },
    results: {
      count,
      sum: count * 10.25,
      avg: 10.25,
      min: 0.1 * count,
      max: 1e9 + count,
      p50: 9.75,
      p95: -3.5,
      p99: 1.5e-7,
      stddev: 1.2345678901234567,
    },
    late,
    emittedAt,
  };
}

interface Row extends Record<string, unknown> {
  name: string;
  key: string;
  window_start: string;
  window_end: string;
  grp: unknown;
  count: number;
  sum: number;
  avg: number;
  min: number;
  max: number;
  p50: number;
  p95: number;
  p99: number;
  stddev: number;
  late: boolean;
  emitted_at: Date;
}

/** A row as the WindowResult it stores (bigint comes back as a string, timestamptz as a Date). */
function asResult(r: Row): WindowResult {
  return {
    name: r.name,
    key: r.key,
    group: r.grp as Record<string, string>,
    window: { start: Number(r.window_start), end: Number(r.window_end) },
    results: { count: r.count, sum: r.sum, avg: r.avg, min: r.min, max: r.max, p50: r.p50, p95: r.p95, p99: r.p99, stddev: r.stddev },
    late: r.late,
    emittedAt: r.emitted_at.getTime(),
  };
}

async function rowsOf(table: string): Promise<WindowResult[]> {
  const rows = await query<Row>(`SELECT * FROM "${table}" ORDER BY name, key, window_start, window_end`);
  return rows.map(asResult);
}

const byWindow = (a: WindowResult, b: WindowResult) =>
  a.name.localeCompare(b.name) || a.key.localeCompare(b.key) || a.window.start - b.window.start || a.window.end - b.window.end;

test('creates the table with the documented columns and primary key', async () => {
  const table = freshTable();
  const sink = await PostgresResultSink.open({ url: PG_URL, table });
  await sink.close();
  const cols = await query<{ column_name: string; data_type: string }>(
    'SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position',
    [table],
  );
  assert.deepEqual(
    cols.map((c) => `${c.column_name} ${c.data_type}`),
    [
      'name text', 'key text', 'window_start bigint', 'window_end bigint', 'grp jsonb',
      'count double precision', 'sum double precision', 'avg double precision', 'min double precision', 'max double precision',
      'p50 double precision', 'p95 double precision', 'p99 double precision', 'stddev double precision',
      'late boolean', 'emitted_at timestamp with time zone',
    ],
  );
  const pk = await query<{ attname: string }>(
    `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
     WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`,
    [`"${table}"`],
  );
  assert.deepEqual(pk.map((r) => r.attname), ['name', 'key', 'window_start', 'window_end']);
});

test('upserts every column; the later result for a window wins, within one write and across writes', async () => {
  const table = freshTable();
  const sink = await PostgresResultSink.open({ url: PG_URL, table });
  const T = 1_704_110_400_000, S = 300_000;
  const a1 = result('latency', 'claude-opus', T, S, 10);
  const b1 = result('latency', 'claude-haiku', T, S, 3);
  const c1 = result('tokens', 'claude-opus', T + S, S, 7);
  // The same window twice in one call: a late re-firing after the first firing.
  const c2 = result('tokens', 'claude-opus', T + S, S, 8, true, T + 2 * S + 5000);
  await sink.write(batches([a1, b1, c1, c2]));
  assert.deepEqual(await rowsOf(table), [a1, b1, c2].sort(byWindow));

  // A second write: a window from the first call fires again, and a new one appears.
  const a2 = result('latency', 'claude-opus', T, S, 11, true, T + S + 20_000);
  const d1 = result('latency', 'claude-opus', T + S, S, 1);
  await sink.write(batches([a2, d1]));
  await sink.write([]);
  assert.deepEqual(await rowsOf(table), [a2, b1, c2, d1].sort(byWindow));
  await sink.close();
  await sink.close(); // idempotent
});

test('a write larger than one statement is chunked and still collapses duplicates', async () => {
  const table = freshTable();
  const sink = await PostgresResultSink.open({ url: PG_URL, table, rowsPerStatement: 7 });
  const T = 1_700_000_000_000;
  const first: WindowResult[] = [], last: WindowResult[] = [];
  for (let i = 0; i < 30; i++) first.push(result('agg', `m${i % 5}`, T + i * 1000, 1000, i + 1));
  for (let i = 0; i < 30; i += 3) last.push(result('agg', `m${i % 5}`, T + i * 1000, 1000, 100 + i, true));
  await sink.write(batches([...first, ...last]));
  const want = new Map(first.map((r) => [`${r.key}/${r.window.start}`, r]));
  for (const r of last) want.set(`${r.key}/${r.window.start}`, r);
  assert.deepEqual(await rowsOf(table), [...want.values()].sort(byWindow));
  await sink.close();
});

test('a chunked write that fails in a later chunk leaves no rows behind and says why', async () => {
  const table = freshTable();
  const sink = await PostgresResultSink.open({ url: PG_URL, table, rowsPerStatement: 4 });
  const rows: WindowResult[] = [];
  for (let i = 0; i < 10; i++) rows.push(result('agg', 'm', i * 1000, 1000, i + 1));
  // PostgreSQL text cannot hold NUL: the third statement fails.
  rows[9] = result('agg\u0000', 'm', 9000, 1000, 1);
  await assert.rejects(sink.write(batches(rows)), (e: unknown) => {
    assert.ok(e instanceof WeirError);
    assert.equal(e.domain, 'external');
    assert.equal(e.retriable, false);
    assert.match(e.message, new RegExp(`table "${table}"`));
    assert.match(e.message, /0x00/);
    return true;
  });
  assert.deepEqual(await rowsOf(table), []);
  // The sink is still usable after a failed write.
  await sink.write(batches(rows.slice(0, 9)));
  assert.equal((await rowsOf(table)).length, 9);
  await sink.close();
});

test('open() on an existing table keeps its rows and does not create it again', async () => {
  const table = freshTable();
  const r = result('latency', 'x', 0, 1000, 1);
  const s1 = await PostgresResultSink.open({ url: PG_URL, table });
  await s1.write(batches([r]));
  await s1.close();
  const s2 = await PostgresResultSink.open({ url: PG_URL, table });
  const r2 = result('latency', 'x', 0, 1000, 2, true);
  assert.deepEqual(await rowsOf(table), [r]);
  await s2.write(batches([r2]));
  await s2.close();
  assert.deepEqual(await rowsOf(table), [r2]);
  const n = await query<{ n: string }>('SELECT count(*) AS n FROM pg_class WHERE relname = $1 AND relkind = $2', [table, 'r']);
  assert.equal(n[0]?.n, '1');
});

test('open() on a table with other columns fails naming the table and the first missing column', async () => {
  const table = freshTable();
  await query(`CREATE TABLE "${table}" (id int PRIMARY KEY)`);
  await assert.rejects(PostgresResultSink.open({ url: PG_URL, table }), (e: unknown) => {
    assert.ok(e instanceof WeirError);
    assert.equal(e.domain, 'user');
    assert.equal(e.retriable, false);
    assert.match(e.message, new RegExp(`postgres sink table ${table} `));
    assert.match(e.message, /column name is missing; add it/);
    return true;
  });
});

test('an unreachable server fails with a retriable external WeirError naming the host', async () => {
  for (const url of ['postgres://postgres:secret@127.0.0.1:1/test', 'postgres://postgres@localhost:1/test']) {
    const host = new URL(url).hostname;
    await assert.rejects(PostgresResultSink.open({ url, table: 'weir_never_created' }), (e: unknown) => {
      assert.ok(e instanceof WeirError, String(e));
      assert.equal(e.domain, 'external');
      assert.equal(e.retriable, true);
      assert.ok(e.message.includes(`${host}:1`), e.message);
      assert.match(e.message, /weir_never_created/);
      assert.match(e.message, /ECONNREFUSED/);
      assert.ok(!e.message.includes('secret'), 'the password stays out of the message');
      assert.ok(!e.message.includes('\n'), 'one line, no stack trace');
      return true;
    });
  }
});

test('a result emitted before the one a row holds does not replace it; one emitted at the same time or later does', async () => {
  const table = freshTable();
  const sink = await PostgresResultSink.open({ url: PG_URL, table });
  const T = 1_704_110_400_000, S = 1000;
  const newer = result('latency', 'm', T, S, 20, true, T + 50_000);
  const older = result('latency', 'm', T, S, 10, false, T + 20_000);
  await sink.write(batches([newer]));
  await sink.write(batches([older]));
  assert.deepEqual(await rowsOf(table), [newer]);
  const again = result('latency', 'm', T, S, 21, true, T + 50_000);
  await sink.write(batches([again]));
  assert.deepEqual(await rowsOf(table), [again]);
  // Within one write the last one still wins, whatever its time (a clock that went back).
  const last = result('latency', 'm', T, S, 22, true, T + 60_000);
  await sink.write(batches([result('latency', 'm', T, S, 23, true, T + 70_000), last]));
  assert.deepEqual(await rowsOf(table), [last]);
  await sink.close();
});
