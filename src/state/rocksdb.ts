// The RocksDB state backend: one database per partition in `${dir}/partition-N/`,
// holding the records of versioned.ts (design: backend.ts):
//
//   version  'v' | u32 len | key (UTF-8) | u32 (0xffffffff - id)  ->  u8 kind (1 put, 0 tombstone) | value
//   journal  'j' | u32 id | key                                   ->  u32 previous version (0xffffffff none) | u8 kind
//
// All integers big-endian, so a key's versions sort together, newest first, and the
// journal sorts by checkpoint id: prune(R) is one range read of 'j' | ..R, and restore(id)
// one pass over the 'v' range plus a range read of the journal after `id`.
//
// A checkpoint is one WriteBatch of its versions and journal entries, written with
// {sync: true} (fsync of the WAL): atomic and durable. restore()'s deletions and clear()
// are synced too. prune()'s batches are not: they are atomic, the WAL recovers a prefix
// of them, and a prune lost in a crash is redone by the next prune (its journal entries
// are still there); the next synced checkpoint makes them durable anyway.
//
// The `rocksdb` package (leveldown API, callbacks) has no types: the little used is declared here.
import { constants } from 'node:fs';
import { access, mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { WeirError } from '../errors/errors';
import { fileError } from '../errors/files';
import type { CorruptionPolicy, PartitionStore, StateBackend } from './backend';
import { StateCorrupt, StateError } from './backend';
import {
  OpenStores,
  type Engine,
  type JournalEntry,
  type RecordCounts,
  type VersionRecord,
  type VersionRef,
  type VersionWrite,
} from './versioned';

type Callback<T = void> = (err: Error | null | undefined, value?: T) => void;
type BatchOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer };
interface RangeOptions {
  gt?: Buffer;
  gte?: Buffer;
  lt?: Buffer;
  lte?: Buffer;
  limit?: number;
  keys?: boolean;
  values?: boolean;
}
interface LevelIterator extends AsyncIterable<[Buffer, Buffer]> {
  next(cb: (err: Error | null | undefined, key?: Buffer, value?: Buffer) => void): void;
  end(cb: Callback): void;
  /** The native iterator (see eachEntry). */
  readonly context: unknown;
}
/** A batch built op by op: one native call per op (the array form costs ~3 times more per op). */
interface ChainedBatch {
  put(key: Buffer, value: Buffer): void;
  del(key: Buffer): void;
  write(options: { sync: boolean }, cb: Callback): void;
}
interface LevelDown {
  open(options: { createIfMissing?: boolean; errorIfExists?: boolean }, cb: Callback): void;
  close(cb: Callback): void;
  batch(): ChainedBatch;
  batch(ops: BatchOp[], options: { sync: boolean }, cb: Callback): void;
  getMany(keys: Buffer[], options: { asBuffer: boolean }, cb: Callback<Array<Buffer | undefined>>): void;
  clear(options: RangeOptions, cb: Callback): void;
  iterator(options: RangeOptions & { keyAsBuffer?: boolean; valueAsBuffer?: boolean; highWaterMark?: number }): LevelIterator;
}
// The package ships no types: the interfaces above declare what Weir uses of it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const rocksdb = require('rocksdb') as (location: string) => LevelDown;

function call<T = void>(f: (cb: Callback<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => f((err, value) => (err ? reject(err) : resolve(value as T))));
}

const V = 0x76; // 'v'
const J = 0x6a; // 'j'
const NONE = 0xffffffff;
const PUT = 1;
const TOMBSTONE = 0;
const V_START = Buffer.from([V]);
const V_END = Buffer.from([V + 1]);
const J_END = Buffer.from([J + 1]);
/** A key no record has: a synced delete of it makes the unsynced writes before it durable. */
const SYNC_KEY = Buffer.from([0]);

function versionKey(key: string, id: number): Buffer {
  const len = Buffer.byteLength(key, 'utf8');
  const b = Buffer.allocUnsafe(9 + len);
  b[0] = V;
  b.writeUInt32BE(len, 1);
  b.write(key, 5, 'utf8');
  b.writeUInt32BE(NONE - id, 5 + len);
  return b;
}

function journalId(id: number): Buffer {
  const b = Buffer.allocUnsafe(5);
  b[0] = J;
  b.writeUInt32BE(id, 1);
  return b;
}

/**
 * Writes the version key of (`key`, `id`) at `p` of `b` (room for 9 + 3 × key.length
 * bytes); returns its UTF-8 key length. Many keys share one buffer: no allocation per key.
 */
function putVersionKey(b: Buffer, p: number, key: string, id: number): number {
  b[p] = V;
  const len = b.write(key, p + 5, 'utf8');
  b.writeUInt32BE(len, p + 1);
  b.writeUInt32BE(NONE - id, p + 5 + len);
  return len;
}

// The package's iterator hands out one entry per next() and callback, each deferred to
// the next tick and popped from the array its native side filled: a restore of 100,000
// windows spent more time there than in RocksDB. Its native call gives up to 1,000
// entries (or `highWaterMark` bytes) at once, in one array, last entry first.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const binding = require('rocksdb/binding') as {
  iterator_next(context: unknown, cb: (err: Error | null, entries: Buffer[], finished: boolean) => void): void;
};

/** Bytes of keys and values per native read of an iterator: 1,000 entries of a few hundred bytes. */
const READ_BYTES = 1 << 20;

/** Each [key, value] of a range, by callbacks, a thousand entries per native read. */
function eachEntry(db: LevelDown, options: RangeOptions & { keyAsBuffer?: false; valueAsBuffer?: false }, each: (key: Buffer, value: Buffer) => void): Promise<void> {
  const it = db.iterator({ ...options, highWaterMark: READ_BYTES });
  return new Promise<void>((resolve, reject) => {
    const done = (e: Error | undefined): void => it.end((e2) => (e !== undefined ? reject(e) : e2 ? reject(e2) : resolve()));
    const step = (): void =>
      binding.iterator_next(it.context, (err, entries, finished) => {
        if (err) return done(err);
        try {
          for (let i = entries.length - 1; i > 0; i -= 2) each(entries[i]!, entries[i - 1]!);
        } catch (e) {
          return done(e instanceof Error ? e : new Error(String(e)));
        }
        if (finished) return done(undefined);
        step();
      });
    step();
  });
}

class RocksEngine implements Engine {
  readonly where: string;
  /** Keys sort as their bytes, a key's versions by id, newest first (versionKey). */
  readonly grouped = true;

  /**
   * The version records as opening read them (key, value, key, value, ...), for the
   * restore that follows: reading them twice would double its cost. Gone at the first
   * change or scan.
   */
  private opened: Buffer[] | undefined;

  constructor(
    private readonly db: LevelDown,
    dir: string,
    versions?: Buffer[],
  ) {
    this.where = `RocksDB state in ${dir}`;
    this.opened = versions;
  }

  write(id: number, writes: readonly VersionWrite[]): Promise<void> {
    this.opened = undefined;
    // Keys and values of the whole batch in one buffer, each op a view of it: RocksDB
    // copies them into its WriteBatch at once.
    let size = 0;
    for (const w of writes) size += 2 * (9 + 3 * w.key.length) + 6 + (w.value === null ? 0 : w.value.length);
    const b = Buffer.allocUnsafeSlow(size);
    const batch = this.db.batch();
    let p = 0;
    for (const w of writes) {
      const vk = p;
      const len = putVersionKey(b, p, w.key, id);
      p += 9 + len;
      const jk = p;
      b[p] = J;
      b.writeUInt32BE(id, p + 1);
      b.copy(b, p + 5, vk + 5, vk + 5 + len);
      p += 5 + len;
      const jv = p;
      b.writeUInt32BE(w.prev === 0 ? NONE : w.prev, p);
      b[p + 4] = w.value === null ? TOMBSTONE : PUT;
      p += 5;
      const vv = p;
      b[p++] = w.value === null ? TOMBSTONE : PUT;
      if (w.value !== null) {
        b.set(w.value, p);
        p += w.value.length;
      }
      batch.put(b.subarray(vk, vk + 9 + len), b.subarray(vv, p));
      batch.put(b.subarray(jk, jk + 5 + len), b.subarray(jv, jv + 5));
    }
    return call((cb) => batch.write({ sync: true }, cb));
  }

  async read(key: string, id: number): Promise<Buffer | null | undefined> {
    const [v] = await call<Array<Buffer | undefined>>((cb) => this.db.getMany([versionKey(key, id)], { asBuffer: true }, cb));
    return v === undefined ? undefined : this.decodeValue(v, key, id);
  }

  async scan(each: (r: VersionRecord) => void): Promise<void> {
    const record = (k: Buffer, v: Buffer): void => {
      const len = k.length >= 9 ? k.readUInt32BE(1) : -1;
      if (len < 0 || k.length !== 9 + len) throw this.corrupt(`a version key of ${k.length} bytes`);
      const key = k.toString('utf8', 5, 5 + len);
      const id = NONE - k.readUInt32BE(5 + len);
      each({ key, id, value: this.decodeValue(v, key, id) });
    };
    const opened = this.opened;
    this.opened = undefined;
    if (opened === undefined) return eachEntry(this.db, { gte: V_START, lt: V_END }, record);
    for (let i = 0; i < opened.length; i += 2) record(opened[i]!, opened[i + 1]!);
  }

  async dropNewer(id: number, versions: readonly VersionRef[]): Promise<void> {
    this.opened = undefined;
    // The next checkpoint is id + 1: the journal must be read from there again.
    this.floor = Math.min(this.floor, id + 1);
    const ops: BatchOp[] = versions.map((v) => ({ type: 'del', key: versionKey(v.key, v.id) }));
    for await (const [k] of this.db.iterator({ gte: journalId(id + 1), lt: J_END, values: false })) ops.push({ type: 'del', key: k });
    if (ops.length > 0) await call((cb) => this.db.batch(ops, { sync: true }, cb));
  }

  /**
   * Journal ids below this are pruned. Prune's deletes leave tombstones at the start
   * of the journal's range until RocksDB compacts them; reading from here steps over
   * none of them, so a prune costs what it prunes, not what earlier prunes deleted.
   * (Checkpoint ids only grow past a prune's bound: restore goes back at most to the
   * oldest retained checkpoint.)
   */
  private floor = 0;
  private nextFloor: number | undefined;

  async journal(upTo: number, limit: number): Promise<JournalEntry[]> {
    const out: JournalEntry[] = [];
    if (upTo < this.floor) return out;
    await eachEntry(this.db, { gte: journalId(this.floor), lt: journalId(upTo + 1), limit }, (k, v) => {
      if (k.length < 5 || v.length !== 5 || (v[4] !== PUT && v[4] !== TOMBSTONE)) throw this.corrupt('a journal entry');
      const prev = v.readUInt32BE(0);
      out.push({ id: k.readUInt32BE(1), key: k.toString('utf8', 5), prev: prev === NONE ? 0 : prev, tombstone: v[4] === TOMBSTONE, raw: k });
    });
    // The whole range up to upTo is in hand: once it is dropped, nothing is left below upTo + 1.
    if (out.length < limit) {
      if (out.length === 0) this.floor = upTo + 1;
      else this.nextFloor = upTo + 1;
    }
    return out;
  }

  async dropJournal(entries: readonly JournalEntry[], versions: readonly VersionRef[]): Promise<void> {
    this.opened = undefined;
    let size = 0;
    for (const v of versions) size += 9 + 3 * v.key.length;
    const b = Buffer.allocUnsafeSlow(Math.max(size, 1));
    const batch = this.db.batch();
    let p = 0;
    for (const v of versions) {
      const len = putVersionKey(b, p, v.key, v.id);
      batch.del(b.subarray(p, p + 9 + len));
      p += 9 + len;
    }
    for (const e of entries) batch.del(e.raw as Buffer);
    const next = this.nextFloor;
    this.nextFloor = undefined;
    await call((cb) => batch.write({ sync: false }, cb));
    if (next !== undefined) this.floor = Math.max(this.floor, next);
  }

  async clear(): Promise<void> {
    this.opened = undefined;
    this.floor = 0;
    this.nextFloor = undefined;
    await call((cb) => this.db.clear({}, cb));
    await call((cb) => this.db.batch([{ type: 'del', key: SYNC_KEY }], { sync: true }, cb));
  }

  async count(): Promise<RecordCounts> {
    const c: RecordCounts = { versions: 0, journal: 0 };
    for await (const [k] of this.db.iterator({ values: false })) {
      if (k[0] === V) c.versions++;
      else if (k[0] === J) c.journal++;
    }
    return c;
  }

  close(): Promise<void> {
    return call((cb) => this.db.close(cb));
  }

  private decodeValue(v: Buffer, key: string, id: number): Buffer | null {
    if (v.length >= 1 && v[0] === PUT) return v.subarray(1);
    if (v.length === 1 && v[0] === TOMBSTONE) return null;
    throw this.corrupt(`version ${id} of key ${JSON.stringify(key)}`);
  }

  private corrupt(what: string): StateError {
    return new StateCorrupt(`${this.where}: ${what} is corrupt`);
  }
}

/** RocksDB reports damaged files (a bad checksum, a garbled MANIFEST or CURRENT, a missing table file) as Status::Corruption. */
function isCorruption(e: unknown): boolean {
  return e instanceof Error && /\bCorruption\b/.test(e.message);
}

/**
 * Opens the database in `dir` and reads every record once: a damaged table file is
 * found on read, not on open, and must be found here, before restore() trusts it.
 * Returns the version records it read (key, value, key, value, ...), for that restore.
 */
async function openVerified(dir: string): Promise<{ db: LevelDown; versions: Buffer[] }> {
  const db = rocksdb(dir);
  await call((cb) => db.open({ createIfMissing: true, errorIfExists: false }, cb));
  try {
    // Reading is the check: RocksDB verifies each block's checksum as it reads it. What
    // sorts before the versions (the journal) is only checked: read as strings, which
    // the binding makes at half the cost of Buffers, and dropped.
    await eachEntry(db, { lt: V_START, keyAsBuffer: false, valueAsBuffer: false }, () => {});
    const versions: Buffer[] = [];
    await eachEntry(db, { gte: V_START }, (k, v) => versions.push(k, v));
    return { db, versions };
  } catch (e) {
    await call((cb) => db.close(cb)).catch(() => undefined);
    throw e;
  }
}

export class RocksDbStateBackend implements StateBackend {
  readonly kind = 'rocksdb' as const;
  private readonly stores = new OpenStores();
  private readonly opening = new Set<number>();
  private readonly onCorruption: CorruptionPolicy;
  onWarning?: (message: string, fields: Record<string, unknown>) => void;

  constructor(
    readonly dir: string,
    opts: { onCorruption?: CorruptionPolicy } = {},
  ) {
    this.onCorruption = opts.onCorruption ?? 'fail';
  }

  async open(partition: number): Promise<PartitionStore> {
    const dir = join(this.dir, `partition-${partition}`);
    this.stores.check(partition, () => `the RocksDB state in ${dir}`, this.opening.has(partition));
    let opened: { db: LevelDown; versions: Buffer[] };
    this.opening.add(partition);
    try {
      try {
        await mkdir(dir, { recursive: true });
      } catch (e) {
        throw fileError(e, `state.dir: cannot create ${dir}`, dir, 'external');
      }
      try {
        // RocksDB would say it deep in an "IO error" about its LOG file.
        await access(dir, constants.W_OK);
      } catch (e) {
        throw fileError(e, `state.dir: cannot write to ${dir}`, dir, 'external');
      }
      try {
        opened = await openVerified(dir);
      } catch (e) {
        if (!isCorruption(e)) throw e;
        const what = `the RocksDB state of partition ${partition} in ${dir} is corrupt (${(e as Error).message})`;
        if (this.onCorruption === 'fail')
          throw new StateError(
            `${what}: move that directory away (or delete it) to rebuild the partition from the earliest offset of its topic, or set state.onCorruption: rebuild to do so by itself`,
            { domain: 'external', cause: e },
          );
        // Kept, not deleted: whoever looks into the damage later has the files.
        const aside = `${dir}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
        await rename(dir, aside);
        this.onWarning?.(`${what}: moved it to ${aside}; partition ${partition} is rebuilt from the earliest offset of its topic`, { partition, dir, movedTo: aside });
        await mkdir(dir, { recursive: true });
        opened = await openVerified(dir);
      }
    } catch (e) {
      if (e instanceof WeirError) throw e;
      throw new StateError(`cannot open the RocksDB state database in ${dir}: ${(e as Error).message}`, { domain: 'external', cause: e });
    } finally {
      this.opening.delete(partition);
    }
    return this.stores.add(partition, new RocksEngine(opened.db, dir, opened.versions));
  }

  close(): Promise<void> {
    return this.stores.close();
  }
}
