// PostgreSQL writer for results: one row per window, upserted, so the table holds each window's latest result.
import { Pool, type PoolClient } from 'pg';
import { RecordsRejectedError, WeirError } from '../errors/errors';
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
// SQLSTATE: 08 connection exception; 57P0x shutdown / cannot connect now; 53300 too many connections.
function connectionSqlState(code: string): boolean {
  return code.startsWith('08') || /^57P0[1-3]$/.test(code) || code === '53300';
}
// Serialization failure and deadlock: two instances upserting the same rows at once; doing it again works.
const TRANSIENT_SQL_STATES = new Set(['40001', '40P01']);
// Class 22 data exception, 23 integrity constraint violation: the table refuses these rows
// (text with NUL, a CHECK or NOT NULL added by someone); other rows still go in.
function rowsRefused(code: string): boolean {
  return code.startsWith('22') || code.startsWith('23');
}

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
  return /Connection terminated|timeout expired|connection timeout/i.test(msg);
}

/** Upserts window results into one table, keyed by (name, key, window_start, window_end). */
export class PostgresResultSink implements RecordSink<WindowResult> {
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
    this.upsertTail = ` ON CONFLICT (${PRIMARY_KEY.join(', ')}) DO UPDATE SET ${updates.join(', ')}`;
  }

  static async open(opts: PostgresSinkOptions): Promise<PostgresResultSink> {
    const pool = new Pool({ connectionString: opts.url, max: 2, connectionTimeoutMillis: opts.connectionTimeoutMs ?? 10_000 });
    // An idle client whose connection drops emits 'error' on the pool; without a listener that
    // would crash the process. The next write checks out a fresh client and reports there.
    pool.on('error', () => undefined);
    const sink = new PostgresResultSink(pool, opts);
    try {
      await sink.createTable();
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw sink.convert('cannot prepare', e);
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
    // A table that already existed must have the columns the upsert writes.
    await this.pool.query(`SELECT ${COLUMNS.join(', ')} FROM ${this.qtable} LIMIT 0`);
  }

  /** `rows`: the error of a write, where a refusal of the rows is a RecordsRejectedError. */
  private convert(doing: string, e: unknown, rows = false): WeirError {
    const where = `postgres result sink (table "${this.opts.table}" at ${target(this.opts.url)})`;
    if (isConnectionFailure(e)) {
      const code = errorCode(e);
      const msg = e instanceof Error && e.message !== '' ? e.message : (code ?? String(e));
      return new WeirError(`${where}: ${doing}: cannot reach the server: ${msg}`, { domain: 'external', retriable: true, cause: e });
    }
    const code = errorCode(e);
    const msg = e instanceof Error ? e.message : String(e);
    if (rows && code !== undefined && rowsRefused(code)) return new RecordsRejectedError(`${where}: ${doing}: ${msg} (SQLSTATE ${code})`, e);
    return new WeirError(`${where}: ${doing}: ${msg}${code !== undefined ? ` (SQLSTATE ${code})` : ''}`, {
      domain: 'external',
      retriable: code !== undefined && TRANSIENT_SQL_STATES.has(code),
      cause: e,
    });
  }

  async write(records: readonly WindowResult[]): Promise<void> {
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
      throw this.convert(`cannot write ${rows.length} result(s)`, e);
    }
    let broken: Error | undefined;
    // The connection may drop between two statements: pg then emits 'error' on the
    // checked-out client, which would be an uncaught exception without a listener.
    const onError = (e: Error): void => void (broken ??= e);
    client.on('error', onError);
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
      throw this.convert(`cannot write ${rows.length} result(s)`, e, true);
    } finally {
      // A client that failed mid-statement may be in any state: destroy it rather than reuse it.
      client.off('error', onError);
      client.release(broken);
    }
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
