// The shared PostgreSQL server of the tests (127.0.0.1:5432, database `test`): fresh table names, queries, results.
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import type { WindowResult } from '../../src/pipeline/types';

export const PG_URL = process.env['WEIR_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A table name no other test uses; remember it to drop it after. */
export function freshTable(tables: string[], prefix = 'weir_results'): string {
  const t = `${prefix}_${randomBytes(5).toString('hex')}`;
  tables.push(t);
  return t;
}

export async function query<R extends Record<string, unknown>>(text: string, values: unknown[] = [], url = PG_URL): Promise<R[]> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(text, values)).rows;
  } finally {
    await c.end();
  }
}

export async function dropTables(tables: readonly string[]): Promise<void> {
  for (const t of tables) await query(`DROP TABLE IF EXISTS "${t}"`);
}

/** The table as the documented CREATE TABLE makes it, with `change` applied to its columns' SQL. */
export function tableDdl(table: string, change: (cols: string[]) => string[] = (c) => c): string {
  const cols = [
    'name text NOT NULL', 'key text NOT NULL', 'window_start bigint NOT NULL', 'window_end bigint NOT NULL', 'grp jsonb',
    'count double precision', 'sum double precision', 'avg double precision', 'min double precision', 'max double precision',
    'p50 double precision', 'p95 double precision', 'p99 double precision', 'stddev double precision',
    'late boolean', 'emitted_at timestamptz', 'PRIMARY KEY (name, key, window_start, window_end)',
  ];
  return `CREATE TABLE "${table}" (${change(cols).join(', ')})`;
}

export function result(name: string, model: string, start: number, sizeMs: number, count: number, late = false, emittedAt = start + sizeMs + 1000): WindowResult {
  return {
    name,
    key: `model=${model}`,
    group: { model },
    window: { start, end: start + sizeMs },
    results: { count, sum: count * 10.25, avg: 10.25, min: 0.1 * count, max: 1e9 + count, p50: 9.75, p95: -3.5, p99: 1.5e-7, stddev: 1.2345678901234567 },
    late,
    emittedAt,
  };
}

/** (name, key, window_start, count, emitted_at ms) of every row, in key order. */
export async function rowSummary(table: string, url = PG_URL): Promise<Array<[string, string, number, number, number]>> {
  const rows = await query<{ name: string; key: string; window_start: string; count: number; emitted_at: Date }>(
    `SELECT name, key, window_start, count, emitted_at FROM "${table}" ORDER BY name, key, window_start`,
    [],
    url,
  );
  return rows.map((r) => [r.name, r.key, Number(r.window_start), r.count, r.emitted_at.getTime()]);
}
