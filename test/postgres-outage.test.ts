// The PostgreSQL sink through a server restart, killed connections, a failover to a
// read-only server and a server that never answers: each failure is retriable, and once
// the server is back the same sink writes again (its pool reconnects).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { PostgresResultSink } from '../src/sinks/postgres';
import { WeirError } from '../src/errors/errors';
import { classify } from '../src/errors/classify';
import { retry } from '../src/errors/retry';
import { query, result, rowSummary } from './helpers/pg';
import { throwawayPostgres, type PgServer } from './helpers/pgserver';
import { batches } from './helpers/results';

let pg: PgServer | undefined;
before(async () => {
  pg = await throwawayPostgres();
});
after(() => pg?.destroy());

const T = 1_704_110_400_000;

function assertTransient(e: unknown, pattern?: RegExp): true {
  assert.ok(e instanceof WeirError, String(e));
  assert.equal(e.retriable, true, e.message);
  assert.equal(classify(e), 'transient');
  if (pattern !== undefined) assert.match(e.message, pattern);
  return true;
}

/** Retries `write` like the delivery queue does, quickly. */
function retried(write: () => Promise<void>): Promise<void> {
  return retry(write, { retries: 100, initialDelayMs: 50, factor: 1.5, maxDelayMs: 300 });
}

test('a server restart: writes fail as transient while it is down, and the same sink writes again once it is up', async (t) => {
  if (pg === undefined) return t.skip('no PostgreSQL binaries on this machine');
  const sink = await PostgresResultSink.open({ url: pg.url, table: 'restart', connectionTimeoutMs: 2000 });
  try {
    await sink.write(batches([result('a', 'm', T, 1000, 1)]));
    pg.stop();
    // The pool's idle connection was closed by the shutdown; a new one is refused.
    await assert.rejects(sink.write(batches([result('a', 'm', T + 1000, 1000, 2)])), (e) => assertTransient(e, /ECONNREFUSED|terminat/));
    await assert.rejects(sink.write(batches([result('a', 'm', T + 1000, 1000, 2)])), (e) => assertTransient(e, /ECONNREFUSED/));
    // A write retried across the restart lands once the server is back.
    const pending = retried(() => sink.write(batches([result('a', 'm', T + 1000, 1000, 2), result('a', 'm', T + 2000, 1000, 3)])));
    await new Promise((r) => setTimeout(r, 300));
    pg.start();
    await pending;
    await sink.write(batches([result('a', 'm', T + 3000, 1000, 4)]));
    assert.deepEqual(
      (await rowSummary('restart', pg.url)).map((r) => r[3]),
      [1, 2, 3, 4],
    );
  } finally {
    await sink.close();
  }
});

test('connections killed under the sink (a failover, pg_terminate_backend) are transient and the next write reconnects', async (t) => {
  if (pg === undefined) return t.skip('no PostgreSQL binaries on this machine');
  const sink = await PostgresResultSink.open({ url: pg.url, table: 'killed' });
  const kill = () =>
    query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'", [], pg!.url);
  try {
    for (let i = 0; i < 5; i++) {
      await sink.write(batches([result('a', 'm', T + i * 1000, 1000, i)]));
      await kill();
      // The killed connection is idle in the pool: the next write either finds it gone or fails transiently on it.
      await retried(() => sink.write(batches([result('b', 'm', T + i * 1000, 1000, i)])));
    }
    // A connection killed while a write runs on it.
    const slow = retried(async () => {
      await sink.write(batches([result('c', 'm', T, 1000, 7)]));
    });
    await kill();
    await slow;
    assert.equal((await rowSummary('killed', pg.url)).length, 11);
  } finally {
    await sink.close();
  }
});

test('after a failover to a server that is read-only for now, writes are transient and succeed once it takes writes', async (t) => {
  if (pg === undefined) return t.skip('no PostgreSQL binaries on this machine');
  const sink = await PostgresResultSink.open({ url: pg.url, table: 'readonly' });
  // From another database: this one's new sessions can no longer write, not even this.
  const writable = () => query('ALTER DATABASE postgres SET default_transaction_read_only = off', [], pg!.url.replace(/postgres$/, 'template1'));
  try {
    // What the old primary, now a standby, answers: cannot execute INSERT in a read-only transaction (25006).
    await query('ALTER DATABASE postgres SET default_transaction_read_only = on', [], pg.url);
    await query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'", [], pg.url);
    await assert.rejects(retry(() => sink.write(batches([result('a', 'm', T, 1000, 1)])), { retries: 3, initialDelayMs: 10 }), (e) =>
      assertTransient((e as WeirError).cause, /read-only/),
    );
    await writable();
    await retried(() => sink.write(batches([result('a', 'm', T, 1000, 1)])));
    assert.equal((await rowSummary('readonly', pg.url)).length, 1);
  } finally {
    await writable();
    await sink.close();
  }
});

test('a server that accepts connections but never answers: the connect timeout is transient', async () => {
  const sockets: Socket[] = [];
  const silent = createServer((s) => void sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const port = (silent.address() as { port: number }).port;
  try {
    await assert.rejects(
      PostgresResultSink.open({ url: `postgres://postgres@127.0.0.1:${port}/test`, table: 'never', connectionTimeoutMs: 300 }),
      (e) => assertTransient(e, new RegExp(`127\\.0\\.0\\.1:${port}`)),
    );
  } finally {
    for (const s of sockets) s.destroy();
    silent.close();
  }
});

test('writes waiting for a pooled connection longer than the connect timeout (the server stalls the ones in flight) are transient', async (t) => {
  if (pg === undefined) return t.skip('no PostgreSQL binaries on this machine');
  const sink = await PostgresResultSink.open({ url: pg.url, table: 'stalled', connectionTimeoutMs: 300 });
  const { Client } = await import('pg');
  const locker = new Client({ connectionString: pg.url });
  await locker.connect();
  try {
    // Another session holds the table: the writes in flight wait on its lock, holding every pooled connection.
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE stalled IN ACCESS EXCLUSIVE MODE');
    const inFlight = [1, 2].map((i) => sink.write(batches([result('a', 'm', T + i * 1000, 1000, i)])));
    await new Promise((r) => setTimeout(r, 100));
    await assert.rejects(sink.write(batches([result('a', 'm', T + 3000, 1000, 3)])), (e) => assertTransient(e, /timeout/));
    await locker.query('COMMIT');
    await Promise.all(inFlight);
    await retried(() => sink.write(batches([result('a', 'm', T + 3000, 1000, 3)])));
    assert.equal((await rowSummary('stalled', pg.url)).length, 3);
  } finally {
    await locker.end();
    await sink.close();
  }
});
