// PostgreSQL writer for results: one row per window, upserted, so the table holds each window's latest result.
import { Pool, type PoolClient } from 'pg';
import { RecordsRejectedError, WeirError, messageOf } from '../errors/errors';
import type { ResultBatch } from '../pipeline/results';
import { stateKey, type WindowResult } from '../pipeline/types';
import type { RecordSink } from './jsonl';

export interface PostgresSinkOptions {
  /** `postgres://user:password@host:port/database` */
  url: string;
  /** Table name; created if missing. Quoted, so it is case-sensitive. */
  table: string;
  /** ms to wait for a connection. @default 10000 */
  connectionTimeoutMs?: number;
  /** Rows per INSERT statement; a write() of more rows runs several in one transaction. @default 1000 */
  rowsPerStatement?: number;
}

const COLUMNS = [
  'name', 'key', 'window_start', 'window_end', 'grp', 'count', 'sum', 'avg', 'min', 'max',
  'p50', 'p95', 'p99', 'stddev', 'late', 'emitted_at',
] as const;
/** Explicit parameter types, so multi-row VALUES never depend on inference. */
const CASTS = [
  'text', 'text', 'bigint', 'bigint', 'jsonb', 'float8', 'float8', 'float8', 'float8', 'float8',
  'float8', 'float8', 'float8', 'float8', 'boolean', 'timestamptz',
] as const;
const PRIMARY_KEY = ['name', 'key', 'window_start', 'window_end'] as const;
type Column = (typeof COLUMNS)[number];

/**
 * What each column receives, and the column types (as `regtype` names) that hold it
 * without loss: a narrower one (`integer` for epoch ms, `real` for a sum) would refuse
 * or round every row, which is the table's problem, not the rows'.
 */
const HOLDS: Record<Column, { what: string; types: readonly string[]; use: string }> = {
  name: { what: 'aggregation names', types: ['text', 'character varying'], use: 'text' },
  key: { what: 'result keys', types: ['text', 'character varying'], use: 'text' },
  window_start: { what: 'epoch milliseconds', types: ['bigint', 'numeric', 'double precision'], use: 'bigint' },
  window_end: { what: 'epoch milliseconds', types: ['bigint', 'numeric', 'double precision'], use: 'bigint' },
  grp: { what: 'the group as JSON', types: ['jsonb', 'json'], use: 'jsonb' },
  count: { what: 'counts', types: ['double precision', 'numeric', 'bigint'], use: 'double precision' },
  sum: { what: 'sums', types: ['double precision', 'numeric'], use: 'double precision' },
  avg: { what: 'averages', types: ['double precision', 'numeric'], use: 'double precision' },
  min: { what: 'minima', types: ['double precision', 'numeric'], use: 'double precision' },
  max: { what: 'maxima', types: ['double precision', 'numeric'], use: 'double precision' },
  p50: { what: 'percentiles', types: ['double precision', 'numeric'], use: 'double precision' },
  p95: { what: 'percentiles', types: ['double precision', 'numeric'], use: 'double precision' },
  p99: { what: 'percentiles', types: ['double precision', 'numeric'], use: 'double precision' },
  stddev: { what: 'standard deviations', types: ['double precision', 'numeric'], use: 'double precision' },
  late: { what: 'true/false', types: ['boolean'], use: 'boolean' },
  emitted_at: { what: 'timestamps', types: ['timestamp with time zone', 'timestamp without time zone'], use: 'timestamptz' },
};

/**
 * The table cannot take Weir's rows at all (a column missing or too narrow, a NOT NULL
 * column Weir does not fill, no privilege): every row would be refused, so this is not
 * a refusal of some records but a mistake in the table, for the user to fix. Never retried.
 */
export class TableSchemaError extends WeirError {
  constructor(message: string, cause?: unknown) {
    super(message, { domain: 'user', retriable: false, cause });
  }
}

function quoteIdent(id: string): string {
  return `"${id.replace(/"/g, '""')}"`;
}

/** `host:port/database` of a URL, never its password. */
function target(url: string): string {
  try {
    const u = new URL(url);
    const host = u.hostname === '' ? 'localhost' : u.hostname;
    return `${host}:${u.port === '' ? '5432' : u.port}${u.pathname.length > 1 ? u.pathname : ''}`;
  } catch {
    return 'the configured URL';
  }
}

// Node and pg errors that mean "could not talk to the server": worth retrying.
const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE',
]);
// SQLSTATE: 08 connection exception; 57P0x shutdown / cannot connect now; 53300 too many
// connections; 25006 read-only transaction: after a failover the old primary (or a
// connection pooler still pointing at it) is a standby until clients reconnect to the new one.
function connectionSqlState(code: string): boolean {
  return code.startsWith('08') || /^57P0[1-3]$/.test(code) || code === '53300' || code === '25006';
}
// Serialization failure and deadlock: two instances upserting the same rows at once; doing it again works.
const TRANSIENT_SQL_STATES = new Set(['40001', '40P01']);
// Class 22 data exception, 23 integrity constraint violation: the table refuses these rows
// (text with NUL, a CHECK or UNIQUE constraint added by someone); other rows still go in.
// Unless the table's definition is why (see SCHEMA_SQL_STATES): then it refuses all of them.
function rowsRefused(code: string): boolean {
  return code.startsWith('22') || code.startsWith('23');
}

// SQLSTATEs about the table rather than the rows: undefined_column, datatype_mismatch,
// not_null_violation (a column Weir does not fill), undefined_table, insufficient_privilege,
// invalid_column_reference (no unique index for ON CONFLICT).
const SCHEMA_SQL_STATES = new Set(['42703', '42804', '23502', '42P01', '42501', '42P10']);
// numeric_value_out_of_range: one row's value, or a column too narrow for every row
// (integer for epoch ms); the table's definition tells which.
const MAYBE_SCHEMA_SQL_STATES = new Set(['22003']);

function errorCode(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  // Node 20 reports a refused connection to a name with several addresses (localhost) as an AggregateError.
  if (e instanceof AggregateError) for (const inner of e.errors) { const c = errorCode(inner); if (c !== undefined) return c; }
  return undefined;
}

function isConnectionFailure(e: unknown): boolean {
  const code = errorCode(e);
  if (code !== undefined && (NETWORK_CODES.has(code) || connectionSqlState(code))) return true;
  const msg = e instanceof Error ? e.message : '';
  // pg and pg-pool give these without a code: a socket closed under a query, a client
  // whose connection failed earlier, a connect that outlasted connectionTimeoutMillis.
  return /Connection terminated|timeout expired|connection timeout|timeout exceeded when trying to connect|connection error and is not queryable/i.test(msg);
}

/**
 * Upserts window results into one table, keyed by (name, key, window_start, window_end).
 *
 * What the table holds after a write: all of its rows when write() resolves, none of them
 * when it throws (one statement, or one transaction when chunked). A row replaces the
 * one of the same window only when its `emitted_at` is not earlier, so writing a result
 * again (a retry, a replay after a restart, `weir redeliver`) is safe: it never moves a
 * window back to an older result.
 *
 * When the server goes away (a restart, a failover, a dropped connection) write() throws
 * a retriable WeirError; the pool drops the broken connections and the next write opens
 * new ones, so a retry succeeds once the server is back.
 */
export class PostgresResultSink implements RecordSink<ResultBatch> {
  private closed = false;
  private readonly qtable: string;
  private readonly upsertTail: string;
  private readonly rowsPerStatement: number;

  private constructor(
    private readonly pool: Pool,
    private readonly opts: PostgresSinkOptions,
  ) {
    this.qtable = quoteIdent(opts.table);
    this.rowsPerStatement = Math.max(1, Math.floor(opts.rowsPerStatement ?? 1000));
    const updates = COLUMNS.filter((c) => !(PRIMARY_KEY as readonly string[]).includes(c)).map((c) => `${c} = EXCLUDED.${c}`);
    // IS NULL: a row written by something else without a time is replaced.
    this.upsertTail =
      ` ON CONFLICT (${PRIMARY_KEY.join(', ')}) DO UPDATE SET ${updates.join(', ')}` +
      ` WHERE ${this.qtable}.emitted_at IS NULL OR ${this.qtable}.emitted_at <= EXCLUDED.emitted_at`;
  }

  static async open(opts: PostgresSinkOptions): Promise<PostgresResultSink> {
    const pool = new Pool({ connectionString: opts.url, max: 2, connectionTimeoutMillis: opts.connectionTimeoutMs ?? 10_000 });
    // An idle client whose connection drops emits 'error' on the pool; without a listener that
    // would crash the process. The next write checks out a fresh client and reports there.
    pool.on('error', () => undefined);
    const sink = new PostgresResultSink(pool, opts);
    let problem: string | undefined;
    try {
      await sink.createTable();
      problem = await sink.schemaProblem();
    } catch (e) {
      const err = await sink.convert('cannot prepare', e);
      await pool.end().catch(() => undefined);
      throw err;
    }
    if (problem !== undefined) {
      await pool.end().catch(() => undefined);
      throw new TableSchemaError(problem);
    }
    return sink;
  }

  private async createTable(): Promise<void> {
    const ddl =
      `CREATE TABLE IF NOT EXISTS ${this.qtable} (` +
      'name text NOT NULL, key text NOT NULL, window_start bigint NOT NULL, window_end bigint NOT NULL, grp jsonb, ' +
      'count double precision, sum double precision, avg double precision, min double precision, max double precision, ' +
      'p50 double precision, p95 double precision, p99 double precision, stddev double precision, ' +
      'late boolean, emitted_at timestamptz, ' +
      `PRIMARY KEY (${PRIMARY_KEY.join(', ')}))`;
    try {
      await this.pool.query(ddl);
    } catch (e) {
      // Two instances creating the table at once: IF NOT EXISTS checks the catalog before it
      // inserts, so the loser of the race gets a unique violation on pg_type (23505) or 42P07.
      const code = errorCode(e);
      if (code !== '23505' && code !== '42P07') throw e;
    }
  }

  /** `postgres sink table T (host:port/db)`: how messages about the table start. */
  private get where(): string {
    return `postgres sink table ${this.opts.table} (${target(this.opts.url)})`;
  }

  /**
   * The first thing in the table's definition that stops the upsert from taking every
   * row, as a message saying what to change; undefined when there is none. A table that
   * already existed may come from an older version or another tool.
   */
  private async schemaProblem(): Promise<string | undefined> {
    const where = this.where;
    const ident = this.qtable;
    const rel = await this.pool.query<{ oid: string | null }>('SELECT to_regclass($1)::oid::text AS oid', [ident]);
    const oid = rel.rows[0]?.oid ?? null;
    if (oid === null) return `${where}: the table does not exist (dropped while weir was running?); start weir again to create it`;
    const cols = await this.pool.query<{ name: string; type: string; shown: string; not_null: boolean; filled: boolean }>(
      `SELECT a.attname AS name, a.atttypid::regtype::text AS type, format_type(a.atttypid, a.atttypmod) AS shown,
              a.attnotnull AS not_null, (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS filled
       FROM pg_attribute a WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
      [oid],
    );
    const byName = new Map(cols.rows.map((c) => [c.name, c]));
    for (const name of COLUMNS) {
      const c = byName.get(name);
      const h = HOLDS[name];
      if (c === undefined) return `${where}: column ${name} is missing; add it: ALTER TABLE ${ident} ADD COLUMN ${name} ${h.use}`;
      if (!h.types.includes(c.type)) return `${where}: column ${name} is ${c.shown}, which cannot hold ${h.what}; use ${h.use}`;
    }
    for (const c of cols.rows) {
      if ((COLUMNS as readonly string[]).includes(c.name) || !c.not_null || c.filled) continue;
      return `${where}: column ${c.name} is NOT NULL without a default, and weir does not write it; give it a default or drop NOT NULL`;
    }
    const unique = await this.pool.query<{ ok: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = $1::oid AND i.indisunique AND i.indpred IS NULL
         AND i.indnkeyatts = ${PRIMARY_KEY.length}
         AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a
              WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey[0:${PRIMARY_KEY.length - 1}])) = $2::text[]) AS ok`,
      [oid, [...PRIMARY_KEY].sort()],
    );
    if (unique.rows[0]?.ok !== true)
      return `${where}: no primary key or unique index on (${PRIMARY_KEY.join(', ')}), which the upsert needs; add one: ALTER TABLE ${ident} ADD PRIMARY KEY (${PRIMARY_KEY.join(', ')})`;
    const may = await this.pool.query<{ ok: boolean; who: string }>(
      "SELECT has_table_privilege($1::oid, 'INSERT') AND has_table_privilege($1::oid, 'UPDATE') AS ok, current_user AS who",
      [oid],
    );
    const who = may.rows[0]?.who ?? '';
    if (may.rows[0]?.ok !== true) return `${where}: user ${who} may not insert into and update the table; GRANT INSERT, UPDATE ON ${ident} TO ${quoteIdent(who)}`;
    return undefined;
  }

  /**
   * `rows`: the error of a write, where a refusal of the rows is a RecordsRejectedError,
   * unless the table's definition refuses every row: then a TableSchemaError.
   */
  private async convert(doing: string, e: unknown, rows = false): Promise<WeirError> {
    const where = `postgres result sink (table "${this.opts.table}" at ${target(this.opts.url)})`;
    const sqlState = isConnectionFailure(e) ? undefined : errorCode(e);
    if (sqlState !== undefined && (SCHEMA_SQL_STATES.has(sqlState) || MAYBE_SCHEMA_SQL_STATES.has(sqlState))) {
      // The definition says which column and what to change; the error alone often does not
      // (an integer column refusing epoch ms reports only "integer out of range").
      const problem = await this.schemaProblem().catch(() => undefined);
      if (problem !== undefined) return new TableSchemaError(problem, e);
      if (SCHEMA_SQL_STATES.has(sqlState)) {
        const column = (e as { column?: unknown }).column;
        const msg = messageOf(e);
        return new TableSchemaError(`${this.where}: ${typeof column === 'string' ? `column ${column}: ` : ''}${msg} (SQLSTATE ${sqlState})`, e);
      }
    }
    if (isConnectionFailure(e)) {
      const code = errorCode(e);
      const msg = e instanceof Error && e.message !== '' ? e.message : (code ?? String(e));
      return new WeirError(`${where}: ${doing}: cannot reach the server: ${msg}`, { domain: 'external', retriable: true, cause: e });
    }
    const code = errorCode(e);
    const msg = messageOf(e);
    if (rows && code !== undefined && rowsRefused(code)) return new RecordsRejectedError(`${where}: ${doing}: ${msg} (SQLSTATE ${code})`, e);
    return new WeirError(`${where}: ${doing}: ${msg}${code !== undefined ? ` (SQLSTATE ${code})` : ''}`, {
      domain: 'external',
      retriable: code !== undefined && TRANSIENT_SQL_STATES.has(code),
      cause: e,
    });
  }

  async write(batches: readonly ResultBatch[]): Promise<void> {
    // Rows take the values one by one: objects are what pg's parameters want.
    const records = batches.length === 1 ? batches[0]!.toObjects() : batches.flatMap((b) => b.toObjects());
    if (records.length === 0) return;
    if (this.closed) throw new WeirError(`postgres result sink (table "${this.opts.table}"): write after close`, { domain: 'internal' });
    // One statement may not touch a row twice (ON CONFLICT ... cannot affect row a second
    // time), so keep only the last result per window: it is the one that must win.
    const last = new Map<string, WindowResult>();
    for (const r of records) last.set(stateKey(r.name, r.key, r.window.start, r.window.end), r);
    const rows = [...last.values()];

    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw await this.convert(`cannot write ${rows.length} result(s)`, e);
    }
    let broken: Error | undefined;
    // The connection may drop between two statements: pg then emits 'error' on the
    // checked-out client, which would be an uncaught exception without a listener.
    const onError = (e: Error): void => void (broken ??= e);
    client.on('error', onError);
    let failed: { e: unknown } | undefined;
    try {
      const chunked = rows.length > this.rowsPerStatement;
      if (chunked) await client.query('BEGIN');
      for (let i = 0; i < rows.length; i += this.rowsPerStatement) {
        const { text, values } = this.upsert(rows.slice(i, i + this.rowsPerStatement));
        await client.query(text, values);
      }
      if (chunked) await client.query('COMMIT');
    } catch (e) {
      broken = e instanceof Error ? e : new Error(String(e));
      if (rows.length > this.rowsPerStatement) await client.query('ROLLBACK').catch(() => undefined);
      failed = { e };
    } finally {
      // A client that failed mid-statement may be in any state: destroy it rather than reuse it.
      client.off('error', onError);
      client.release(broken);
    }
    // After the release: telling a schema error from a refused row may need the pool.
    if (failed !== undefined) throw await this.convert(`cannot write ${rows.length} result(s)`, failed.e, true);
  }

  private upsert(rows: readonly WindowResult[]): { text: string; values: unknown[] } {
    const values: unknown[] = [];
    const tuples: string[] = [];
    for (const r of rows) {
      const base = values.length;
      const x = r.results;
      values.push(
        r.name, r.key, r.window.start, r.window.end, JSON.stringify(r.group),
        x.count, x.sum, x.avg, x.min, x.max, x.p50, x.p95, x.p99, x.stddev,
        r.late, new Date(r.emittedAt),
      );
      tuples.push(`(${CASTS.map((t, j) => `$${base + j + 1}::${t}`).join(', ')})`);
    }
    return { text: `INSERT INTO ${this.qtable} (${COLUMNS.join(', ')}) VALUES ${tuples.join(', ')}${this.upsertTail}`, values };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}
