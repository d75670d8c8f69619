// State backends (src/state/): memory, RocksDB (temp dirs) and Redis ($WEIR_TEST_REDIS_URL, default 127.0.0.1:6379; keys
// under a prefix unique to this run), each in-process and on the state thread (thread.ts),
// against a plain Map reference: random put/delete/stage(batch)
// /checkpoint runs with retention (prune), restore to every retained checkpoint,
// simulated crashes (version N written, metadata never: restore(N-1) removes it), exact
// record counts after prune, digests computed from scratch, clear(), reopen, errors.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { WeirError } from '../src/errors/errors';
import { ChangeBatchWriter, openStateBackend, StateError, VersionedStore, type PartitionStore, type StateBackend, type StateBackendConfig, type StateSummary } from '../src/state';
import { MemoryEngine } from '../src/state/memory';
import type { Engine } from '../src/state/versioned';
import { rng } from './helpers/random';
import { xxh64Reference } from './helpers/xxh64';

const REDIS_URL = process.env['WEIR_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const RUN = `weir-state-test-${process.pid}-${Date.now().toString(36)}`;
const KINDS = ['memory', 'rocksdb', 'redis'] as const;
type Kind = (typeof KINDS)[number];
/**
 * Each backend in-process, and on the state thread as `weir run` has it; RocksDB also
 * without fsyncs, as `weir run` has it with a changelog (the same results: only a
 * machine's crash could tell them apart).
 */
const VARIANTS: Array<{ kind: Kind; thread: boolean; name: string; sync?: boolean }> = [
  ...KINDS.flatMap((kind) => [
    { kind, thread: false, name: kind },
    { kind, thread: true, name: `${kind} on a thread` },
  ]),
  { kind: 'rocksdb', thread: false, name: 'rocksdb without fsync', sync: false },
  { kind: 'rocksdb', thread: true, name: 'rocksdb without fsync on a thread', sync: false },
];

const admin = new Redis(REDIS_URL);
const dirs: string[] = [];
after(async () => {
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${RUN}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await admin.del(...keys);
  } while (cursor !== '0');
  await admin.quit();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/**
 * The digest of the spec, written again here: sum mod 2^64 of xxh64(key ‖ 0 ‖ value), or
 * (checkpoints recorded before) of sha256(key ‖ 0 ‖ value)[0..8] (BE).
 */
function reference(m: ReadonlyMap<string, Buffer>, algorithm: 'xxh64' | 'sha256' = 'xxh64'): StateSummary {
  let sum = 0n;
  let bytes = 0;
  for (const [k, v] of m) {
    const data = Buffer.concat([Buffer.from(k, 'utf8'), Buffer.from([0]), v]);
    const h = algorithm === 'xxh64' ? xxh64Reference(data) : createHash('sha256').update(data).digest().readBigUInt64BE(0);
    sum = (sum + h) % 2n ** 64n;
    bytes += Buffer.from(k, 'utf8').length + v.length;
  }
  return { entries: m.size, bytes, digest: sum.toString(16).padStart(16, '0') };
}

const hex = (m: ReadonlyMap<string, Buffer>): Array<[string, string]> => [...m].map(([k, v]): [string, string] => [k, v.toString('hex')]).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

interface Harness {
  kind: Kind;
  backend: StateBackend;
  /** A new backend object on the same storage, as after a process restart (memory: the same object). */
  restart(): Promise<StateBackend>;
  /** Record counts read around the store (Redis: HLEN / ZCARD of the documented keys). */
  raw?: (p: number) => Promise<{ versions: number; journal: number }>;
  dir?: string;
  close(): Promise<void>;
}

async function harness(kind: Kind, thread = false, sync?: boolean): Promise<Harness> {
  const instance = `i${Math.random().toString(36).slice(2, 8)}`;
  let cfg: StateBackendConfig;
  let dir: string | undefined;
  if (kind === 'memory') cfg = { backend: 'memory' };
  else if (kind === 'rocksdb') {
    dir = await mkdtemp(join(tmpdir(), 'weir-state-'));
    dirs.push(dir);
    cfg = { backend: 'rocksdb', dir, ...(sync === undefined ? {} : { sync }) };
  } else cfg = { backend: 'redis', url: REDIS_URL, prefix: RUN };
  const h: Harness = {
    kind,
    dir,
    backend: await openStateBackend(cfg, instance, { thread }),
    async restart() {
      if (kind === 'memory') return h.backend;
      await h.backend.close();
      h.backend = await openStateBackend(cfg, instance, { thread });
      return h.backend;
    },
    close: () => h.backend.close(),
  };
  if (kind === 'redis') {
    h.raw = async (p) => {
      const base = `${RUN}:${instance}:partition-${p}:`;
      return { versions: await admin.hlen(`${base}v`), journal: await admin.zcard(`${base}j`) };
    };
  }
  return h;
}

/** Counts the records of a closed RocksDB partition database directly. */
async function rawRocks(dir: string, p: number): Promise<{ versions: number; journal: number }> {
  type Cb = (e: Error | null) => void;
  interface RawDb {
    open(o: { createIfMissing: boolean }, cb: Cb): void;
    iterator(o: { values: boolean }): AsyncIterable<[Buffer]>;
    close(cb: Cb): void;
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- rocksdb ships no types; src/state/rocksdb.ts declares the ones it uses
  const db = (require('rocksdb') as (location: string) => RawDb)(join(dir, `partition-${p}`));
  await new Promise<void>((res, rej) => db.open({ createIfMissing: false }, (e: Error | null) => (e ? rej(e) : res())));
  const c = { versions: 0, journal: 0 };
  for await (const [k] of db.iterator({ values: false })) {
    if (k[0] === 0x56) c.versions++;
    else if (k[0] === 0x6a) c.journal++;
    else assert.fail(`unexpected RocksDB key ${k.toString('hex')}`);
  }
  await new Promise<void>((res, rej) => db.close((e: Error | null) => (e ? rej(e) : res())));
  return c;
}

const RETAIN = 3;

/**
 * A seeded random run on partition 0 of `h`, checked step by step against a Map
 * model; returns every checkpoint's summary (identical for every backend).
 */
async function randomRun(h: Harness, seed: number, steps: number): Promise<StateSummary[]> {
  const r = rng(seed);
  const int = (n: number): number => Math.floor(r() * n);
  const pool = Array.from({ length: 40 }, (_, i) => (i % 9 === 0 ? `k:${i}:é✓\u0000x` : `key-${i}`));
  pool.push('');
  const randValue = (): Buffer => Buffer.from(Array.from({ length: int(24) }, () => int(256)));

  let store = (await h.backend.open(0)) as VersionedStore;
  await store.clear();
  let committed = new Map<string, Buffer>();
  /** Retained checkpoints' states, by id. */
  const snaps = new Map<number, Map<string, Buffer>>();
  /**
   * Versions and journal entries each not yet pruned checkpoint wrote (a delete of an
   * absent key writes none; a key's first version has no journal entry).
   */
  const writes = new Map<number, { versions: number; journal: number }>();
  let lastId = 0;
  const summaries: StateSummary[] = [];

  const stage = (n: number): Map<string, Buffer | null> => {
    const ops = new Map<string, Buffer | null>();
    // Half of the time as one encoded batch (what a checkpoint stages), mixed with single puts and deletes.
    const batch = r() < 0.5 ? new ChangeBatchWriter(16) : undefined;
    for (let i = 0; i < n; i++) {
      const key = pool[int(pool.length)]!;
      const single = batch === undefined || r() < 0.2;
      if (r() < 0.3) {
        if (single) {
          if (batch !== undefined && batch.count > 0) store.stage(batch.finish());
          store.delete(key);
        } else batch.delete(key);
        ops.set(key, null);
      } else {
        const v = randValue();
        if (single) {
          if (batch !== undefined && batch.count > 0) store.stage(batch.finish());
          store.put(key, v);
        } else batch.put(key, v);
        ops.set(key, Buffer.from(v));
      }
    }
    if (batch !== undefined && batch.count > 0) store.stage(batch.finish());
    return ops;
  };
  const apply = (ops: Map<string, Buffer | null>): { next: Map<string, Buffer>; w: { versions: number; journal: number } } => {
    const next = new Map(committed);
    const w = { versions: 0, journal: 0 };
    for (const [k, v] of ops) {
      if (v === null) {
        if (next.delete(k)) {
          w.versions++;
          w.journal++;
        }
      } else {
        next.set(k, v);
        w.versions++;
        if (committed.has(k)) w.journal++;
      }
    }
    return { next, w };
  };
  const checkGets = async (m: Map<string, Buffer>): Promise<void> => {
    for (let i = 0; i < 6; i++) {
      const k = pool[int(pool.length)]!;
      assert.equal((await store.get(k))?.toString('hex'), m.get(k)?.toString('hex'), `get(${JSON.stringify(k)})`);
    }
  };
  const oldest = (): number => Math.min(...snaps.keys());
  const checkCounts = async (): Promise<void> => {
    const R = oldest();
    const expected = { versions: snaps.get(R)!.size, journal: 0 };
    for (const [id, n] of writes) {
      if (id <= R) continue;
      expected.versions += n.versions;
      expected.journal += n.journal;
    }
    assert.deepEqual(await store.records(), expected, `records after prune(${R})`);
    if (h.raw) assert.deepEqual(await h.raw(0), expected, 'raw records');
  };
  const checkpoint = async (id: number, ops: Map<string, Buffer | null>): Promise<void> => {
    const { next, w } = apply(ops);
    const sum = await store.checkpoint(id);
    assert.deepEqual(sum, reference(next), `summary of checkpoint ${id}`);
    summaries.push(sum);
    committed = next;
    snaps.set(id, next);
    writes.set(id, w);
    lastId = id;
    while (snaps.size > RETAIN) snaps.delete(oldest());
    await store.prune(oldest());
    for (const id of [...writes.keys()]) if (id <= oldest()) writes.delete(id);
    await checkCounts();
  };
  const restoreAll = async (): Promise<void> => {
    // Newest first, as recovery tries them; each restore(k) deletes the versions > k.
    for (const k of [...snaps.keys()].sort((a, b) => b - a)) {
      // Now and then as a checkpoint recorded with SHA-256 digests is restored: that
      // summary, while the store goes on with its own (the next checkpoint's is checked).
      const digest = r() < 0.3 ? 'sha256' : 'xxh64';
      const { entries, summary } = await store.restore(k, digest);
      const want = snaps.get(k)!;
      assert.deepEqual(hex(entries), hex(want), `restore(${k}) entries`);
      assert.deepEqual(summary, reference(want, digest), `restore(${k}, ${digest}) summary`);
      committed = want;
      lastId = k;
      for (const id of [...snaps.keys()]) if (id > k) snaps.delete(id);
      for (const id of [...writes.keys()]) if (id > k) writes.delete(id);
      await checkGets(want);
      await checkCounts();
    }
  };

  for (let step = 1; step <= steps; step++) {
    const ops = stage(int(25));
    await checkGets(committed); // staged changes are not visible
    if (step % 11 === 0 && lastId > 0) {
      // Crash: version N is written, its metadata never is; a restarted process restores N-1.
      const crashId = lastId + 1 + int(3);
      assert.deepEqual(await store.checkpoint(crashId), reference(apply(ops).next));
      await store.close();
      const backend = await h.restart();
      store = (await backend.open(0)) as VersionedStore;
      await assert.rejects(store.get('key-1'), StateError, 'get() before restore()');
      const { entries, summary } = await store.restore(lastId);
      assert.deepEqual(hex(entries), hex(committed), `restore(${lastId}) after the crash`);
      assert.deepEqual(summary, reference(committed));
      await checkCounts(); // version crashId is gone
      await checkGets(committed);
      // The next checkpoint reuses the crashed id or skips past it: built on N-1's state either way.
      const next = r() < 0.5 ? crashId : crashId + 1;
      await checkpoint(next, stage(1 + int(20)));
      await checkGets(committed);
    } else {
      await checkpoint(lastId + 1 + (r() < 0.25 ? int(3) : 0), ops);
      await checkGets(committed);
    }
    if (step % 17 === 0) await restoreAll();
  }
  // A closed and reopened store (RocksDB / Redis: a new backend object) keeps the data.
  await store.close();
  const expected = await (async () => {
    const counts = { versions: snaps.get(oldest())!.size, journal: 0 };
    for (const [id, n] of writes) {
      if (id <= oldest()) continue;
      counts.versions += n.versions;
      counts.journal += n.journal;
    }
    return counts;
  })();
  if (h.dir !== undefined) assert.deepEqual(await rawRocks(h.dir, 0), expected, 'raw RocksDB records');
  const backend = await h.restart();
  store = (await backend.open(0)) as VersionedStore;
  await restoreAll();
  await store.close();
  return summaries;
}

const runs = new Map<string, StateSummary[]>();

for (const { kind, thread, name, sync } of VARIANTS) {
  test(`${name}: random put/delete/stage/checkpoint/prune/restore/crash runs match a Map`, async () => {
    const h = await harness(kind, thread, sync);
    try {
      runs.set(name, await randomRun(h, 42, 70));
      await h.backend.open(0).then((s) => s.close()); // partition 0 can be opened again after close
    } finally {
      await h.close();
    }
  });

  test(`${name}: partitions are separate; clear(); errors`, async () => {
    const h = await harness(kind, thread, sync);
    try {
      const a = await h.backend.open(0);
      const b = await h.backend.open(1);
      await assert.rejects(h.backend.open(0), StateError, 'a partition is open once');
      await assert.rejects(a.checkpoint(1), /before restore\(\) or clear\(\)/);
      await a.restore(0);
      await b.clear();
      a.put('k', Buffer.from('a'));
      a.put('only-a', Buffer.from('x'));
      b.put('k', Buffer.from('b'));
      await a.checkpoint(1);
      await b.checkpoint(1);
      assert.equal((await a.get('k'))?.toString(), 'a');
      assert.equal((await b.get('k'))?.toString(), 'b');
      assert.equal(await b.get('only-a'), undefined);

      // A checkpoint id that is not newer fails, and its changes stay staged.
      a.put('k', Buffer.from('a2'));
      await assert.rejects(a.checkpoint(1), (e: unknown) => e instanceof StateError && e.domain === 'internal');
      assert.equal((await a.get('k'))?.toString(), 'a');
      assert.deepEqual(await a.checkpoint(3), reference(new Map<string, Buffer>([['k', Buffer.from('a2')], ['only-a', Buffer.from('x')]])));
      assert.equal((await a.get('k'))?.toString(), 'a2');

      // clear(): nothing left, and a fresh start works.
      a.put('staged', Buffer.from('dropped by clear'));
      await a.clear();
      assert.deepEqual(await (a as VersionedStore).records(), { versions: 0, journal: 0 });
      if (h.raw) assert.deepEqual(await h.raw(0), { versions: 0, journal: 0 });
      assert.equal(await a.get('k'), undefined);
      const r = await a.restore(7);
      assert.equal(r.entries.size, 0);
      assert.deepEqual(r.summary, { entries: 0, bytes: 0, digest: '0000000000000000' });
      a.put('z', Buffer.alloc(0));
      await assert.rejects(a.checkpoint(7), /not newer/, 'after restore(7) the next id is > 7');
      assert.deepEqual(await a.checkpoint(8), reference(new Map<string, Buffer>([['z', Buffer.alloc(0)]])));
      assert.equal((await a.get('z'))?.length, 0);
      assert.equal((await b.get('k'))?.toString(), 'b', 'clear() of partition 0 leaves partition 1');

      await a.close();
      await a.close(); // idempotent
      assert.throws(() => a.put('x', Buffer.from('x')), StateError);
      await assert.rejects(a.get('z'), StateError);
    } finally {
      await h.close();
    }
  });
}

test('every backend gives the same summaries for the same run', () => {
  const mem = runs.get('memory');
  assert.ok(mem !== undefined && mem.length > 60);
  for (const { name } of VARIANTS) assert.deepEqual(runs.get(name), mem, name);
});

/** Writes records to partition 0's RocksDB database directly, as `[key, value]` byte pairs. */
async function writeRaw(dir: string, records: Array<[Buffer, Buffer]>): Promise<void> {
  type Cb = (e: Error | null) => void;
  interface RawDb {
    open(o: { createIfMissing: boolean }, cb: Cb): void;
    batch(ops: Array<{ type: 'put'; key: Buffer; value: Buffer }>, o: { sync: boolean }, cb: Cb): void;
    close(cb: Cb): void;
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- see rawRocks
  const db = (require('rocksdb') as (location: string) => RawDb)(join(dir, 'partition-0'));
  await new Promise<void>((res, rej) => db.open({ createIfMissing: true }, (e) => (e ? rej(e) : res())));
  const ops = records.map(([key, value]) => ({ type: 'put' as const, key, value }));
  await new Promise<void>((res, rej) => db.batch(ops, { sync: true }, (e) => (e ? rej(e) : res())));
  await new Promise<void>((res, rej) => db.close((e) => (e ? rej(e) : res())));
}

test('rocksdb: a database of the earlier binary layout is upgraded when opened, and restores as it was', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'weir-state-'));
  dirs.push(dir);
  // The earlier layout: version 'v' | u32 len | key | u32 (0xffffffff - id) -> u8 kind | value;
  // journal 'j' | u32 id | key -> u32 previous (0xffffffff none) | u8 kind (unchanged today).
  const version = (key: string, id: number, value: Buffer | null): [Buffer, Buffer] => {
    const k = Buffer.from(key, 'utf8');
    const head = Buffer.alloc(5);
    head[0] = 0x76;
    head.writeUInt32BE(k.length, 1);
    const tail = Buffer.alloc(4);
    tail.writeUInt32BE(0xffffffff - id);
    return [Buffer.concat([head, k, tail]), value === null ? Buffer.from([0]) : Buffer.concat([Buffer.from([1]), value])];
  };
  const journal = (key: string, id: number, prev: number, put: boolean): [Buffer, Buffer] => {
    const k = Buffer.alloc(5);
    k[0] = 0x6a;
    k.writeUInt32BE(id, 1);
    const v = Buffer.alloc(5);
    v.writeUInt32BE(prev === 0 ? 0xffffffff : prev);
    v[4] = put ? 1 : 0;
    return [Buffer.concat([k, Buffer.from(key, 'utf8')]), v];
  };
  const odd = 'k:é✓\u0000x';
  const bytes = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 37) & 255));
  await writeRaw(dir, [
    version('a', 1, Buffer.from('a1')),
    journal('a', 1, 0, true),
    version('a', 2, Buffer.from('a2')),
    journal('a', 2, 1, true),
    version('gone', 1, Buffer.from('g')),
    journal('gone', 1, 0, true),
    version('gone', 2, null),
    journal('gone', 2, 1, false),
    version(odd, 2, bytes),
    journal(odd, 2, 0, true),
    version('empty', 2, Buffer.alloc(0)),
    journal('empty', 2, 0, true),
    // Newer than the checkpoint restored: dropped.
    version('a', 3, Buffer.from('a3')),
    journal('a', 3, 2, true),
  ]);
  const sorted = (m: Map<string, Buffer>): Array<[string, Buffer]> => [...m].sort(([x], [y]) => (x < y ? -1 : 1));
  let b = await openStateBackend({ backend: 'rocksdb', dir }, 'i', { thread: false });
  let ps = await b.open(0);
  assert.deepEqual(sorted((await ps.restore(2)).entries), [['a', Buffer.from('a2')], ['empty', Buffer.alloc(0)], [odd, bytes]]);
  assert.deepEqual(await ps.get('a'), Buffer.from('a2'));
  // It goes on from there in today's layout: a checkpoint, a restore (on the state thread), a prune.
  ps.put('a', Buffer.from('a4'));
  await ps.checkpoint(4);
  await b.close();
  b = await openStateBackend({ backend: 'rocksdb', dir }, 'i', { thread: true });
  ps = await b.open(0);
  assert.deepEqual(sorted((await ps.restore(4)).entries), [['a', Buffer.from('a4')], ['empty', Buffer.alloc(0)], [odd, bytes]]);
  ps.delete('empty');
  await ps.checkpoint(5);
  await ps.prune(5);
  await b.close();
  // Nothing of the earlier layout is left ('v' keys would fail rawRocks), nor anything pruned.
  assert.deepEqual(await rawRocks(dir, 0), { versions: 2, journal: 0 });
  b = await openStateBackend({ backend: 'rocksdb', dir }, 'i', { thread: false });
  assert.deepEqual(sorted((await (await b.open(0)).restore(5)).entries), [['a', Buffer.from('a4')], [odd, bytes]]);
  await b.close();
});

for (const thread of [false, true]) {
  const on = thread ? ' (on a thread)' : '';
    test(`rocksdb${on}: a failure to open names the directory`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-state-'));
    dirs.push(dir);
    const file = join(dir, 'not-a-dir');
    await writeFile(file, 'x');
    const b = await openStateBackend({ backend: 'rocksdb', dir: file }, 'i', { thread });
    // A file where the directory should be is the user's to fix: named, with the cause.
    await assert.rejects(b.open(2), (e: unknown) => e instanceof WeirError && e.domain === 'user' && e.message === `state.dir: cannot create ${join(file, 'partition-2')}: ${file} is a file, not a directory`);
    // The same database open in two backends (RocksDB's lock).
    const b1 = await openStateBackend({ backend: 'rocksdb', dir }, 'i', { thread });
    const b2 = await openStateBackend({ backend: 'rocksdb', dir }, 'i', { thread });
    await b1.open(0);
    await assert.rejects(b2.open(0), (e: unknown) => e instanceof WeirError && e.message.includes(join(dir, 'partition-0')));
    await b1.close();
    await b2.close();
  });

  test(`redis${on}: a failure to connect names the URL without its password`, async () => {
    await assert.rejects(
      openStateBackend({ backend: 'redis', url: 'redis://:hunter2@127.0.0.1:1' }, 'i', { thread }),
      (e: unknown) => e instanceof WeirError && e.domain === 'external' && e.retriable && e.message.includes('127.0.0.1:1') && !e.message.includes('hunter2'),
    );
    await assert.rejects(openStateBackend({ backend: 'rocksdb' } as unknown as StateBackendConfig, 'i', { thread }), /state\.dir/);
  });
}

test('checkpoint() and prune() touch only the changes, never the whole state', async () => {
  const calls: Array<[string, number]> = [];
  const inner = new MemoryEngine('counted');
  const engine = new Proxy(inner, {
    get(t, p, rcv) {
      const v: unknown = Reflect.get(t, p, rcv);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const n = Array.isArray(args[1]) ? args[1].length : Array.isArray(args[0]) ? args[0].length : 0;
        calls.push([String(p), n]);
        return (v as (...a: unknown[]) => unknown).apply(t, args);
      };
    },
  }) as Engine;
  const s: PartitionStore = new VersionedStore(0, engine);
  await s.clear();
  for (let i = 0; i < 3000; i++) s.put(`k${i}`, Buffer.from([i & 255]));
  await s.checkpoint(1);
  calls.length = 0;
  s.put('k1', Buffer.from('new'));
  s.delete('k2');
  s.delete('never-there');
  s.put('k3', Buffer.from('x'));
  s.delete('k3'); // a later stage wins
  const sum = await s.checkpoint(2);
  assert.deepEqual(calls, [['write', 3]]);
  assert.equal(sum.entries, 2998);
  calls.length = 0;
  assert.deepEqual(await s.checkpoint(3), sum); // nothing staged: nothing written
  assert.equal(calls.length, 0);
  await s.prune(3);
  assert.deepEqual(
    calls.map(([op]) => op),
    ['journal', 'dropJournal'],
  );
  assert.equal(calls.some(([op]) => op === 'scan'), false);
  // 3000 puts + 3 changes journalled; k1's, k2's and k3's old versions and k2's, k3's tombstones dropped.
  assert.deepEqual(await (s as VersionedStore).records(), { versions: 2998, journal: 0 });
});
