// The RocksDB state backend: one database per partition in `${dir}/partition-N/`,
// holding the records of versioned.ts (design: backend.ts):
//
//   version  'V' | hex8 len | key (UTF-8) | hex8 (0xffffffff - id)  ->  value (base64), or '-' (tombstone)
//   journal  'j' | u32 id | key                                     ->  u32 previous version (0xffffffff none) | u8 kind
//
// A key's versions sort together (its length first, then its bytes), newest first, and
// the journal sorts by checkpoint id (big-endian): prune(R) is one range read of
// 'j' | ..R, and restore(id) one pass over the 'V' range plus a range read of the
// journal after `id`.
//
// Version records are text (ASCII but for the key's own UTF-8) because of what reading
// costs: the binding makes a JavaScript string of an entry at a fraction of what a
// Buffer costs (each Buffer is its own native allocation), and a restore reads every
// version. Databases of the binary layout that came before ('v' | u32 len | key | u32
// (0xffffffff - id) -> u8 kind | value) are rewritten to this one when opened, in one
// atomic batch.
//
// A checkpoint is one WriteBatch of its versions and journal entries, written with
// {sync: true} (fsync of the WAL): atomic and durable; with {sync: false} where the
// backend's checkpoints are a cache of a durable copy elsewhere (backend.ts).
// restore()'s deletions and clear() are synced too. prune()'s batches are not: they
// are atomic, the WAL recovers a prefix of them, and a prune lost in a crash is redone
// by the next prune (its journal entries are still there); the next synced checkpoint
// makes them durable anyway.
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
  needsJournal,
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
  getMany(keys: Buffer[], options: { asBuffer: false }, cb: Callback<Array<string | undefined>>): void;
  clear(options: RangeOptions, cb: Callback): void;
  iterator(options: RangeOptions & { keyAsBuffer?: boolean; valueAsBuffer?: boolean; highWaterMark?: number }): LevelIterator;
}
// The package ships no types: the interfaces above declare what Weir uses of it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const rocksdb = require('rocksdb') as (location: string) => LevelDown;

function call<T = void>(f: (cb: Callback<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => f((err, value) => (err ? reject(err) : resolve(value as T))));
}

const V = 0x56; // 'V'
const J = 0x6a; // 'j'
/** The first byte of a version key in the earlier, binary layout. */
const LEGACY_V = 0x76; // 'v'
const NONE = 0xffffffff;
/** Journal values: the kind of the version. */
const PUT = 1;
const TOMBSTONE = 0;
/** A version's value when it is a tombstone ('-' is no base64 character). */
const TOMBSTONE_TEXT = '-';
const V_START = Buffer.from([V]);
const V_END = Buffer.from([V + 1]);
const J_END = Buffer.from([J + 1]);
const LEGACY_START = Buffer.from([LEGACY_V]);
const LEGACY_END = Buffer.from([LEGACY_V + 1]);
/** A key no record has: a synced delete of it makes the unsynced writes before it durable. */
const SYNC_KEY = Buffer.from([0]);
/** A version key's bytes besides its key: 'V', the length and the id as 8 hex digits each. */
const VK_EXTRA = 17;
const HEX = Buffer.from('0123456789abcdef');

function putHex8(b: Buffer, p: number, n: number): void {
  for (let i = 7; i >= 0; i--) {
    b[p + i] = HEX[n & 15]!;
    n >>>= 4;
  }
}

/**
 * Writes the version key of (`key`, `id`) at `p` of `b` (room for VK_EXTRA + 3 ×
 * key.length bytes); returns its UTF-8 key length. Many keys share one buffer: no
 * allocation per key.
 */
function putVersionKey(b: Buffer, p: number, key: string, id: number): number {
  b[p] = V;
  const len = b.write(key, p + 9, 'utf8');
  putHex8(b, p + 1, len);
  putHex8(b, p + 9 + len, NONE - id);
  return len;
}

function versionKey(key: string, id: number): Buffer {
  const b = Buffer.allocUnsafe(VK_EXTRA + 3 * key.length);
  const len = putVersionKey(b, 0, key, id);
  return b.subarray(0, VK_EXTRA + len);
}

function journalId(id: number): Buffer {
  const b = Buffer.allocUnsafe(5);
  b[0] = J;
  b.writeUInt32BE(id, 1);
  return b;
}

/** The id of a version key read as a string (its last 8 characters, lowercase hex), -1 if they are not. */
function versionIdOf(k: string): number {
  let n = 0;
  for (let i = k.length - 8; i < k.length; i++) {
    const c = k.charCodeAt(i);
    const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
    if (d < 0) return -1;
    n = n * 16 + d;
  }
  return NONE - n;
}

// The package's iterator hands out one entry per next() and callback, each deferred to
// the next tick and popped from the array its native side filled: a restore of 100,000
// windows spent more time there than in RocksDB. Its native call gives up to 1,000
// entries (or `highWaterMark` bytes) at once, in one array, last entry first.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const binding = require('rocksdb/binding') as {
  iterator_next(context: unknown, cb: (err: Error | null, entries: Array<Buffer | string>, finished: boolean) => void): void;
};

/** Bytes of keys and values per native read of an iterator: 1,000 entries of a few hundred bytes. */
const READ_BYTES = 1 << 20;

/** Each [key, value] of a range, by callbacks, a thousand entries per native read. */
function eachEntry(db: LevelDown, options: RangeOptions, each: (key: Buffer, value: Buffer) => void): Promise<void> {
  return readRange(db, { ...options, highWaterMark: READ_BYTES }, each);
}

/** eachEntry(), keys and values as strings (UTF-8). */
function eachText(db: LevelDown, options: RangeOptions, each: (key: string, value: string) => void): Promise<void> {
  return readRange(db, { ...options, keyAsBuffer: false, valueAsBuffer: false, highWaterMark: READ_BYTES }, each);
}

function readRange<T extends Buffer | string>(
  db: LevelDown,
  options: RangeOptions & { keyAsBuffer?: boolean; valueAsBuffer?: boolean; highWaterMark: number },
  each: (key: T, value: T) => void,
): Promise<void> {
  const it = db.iterator(options);
  return new Promise<void>((resolve, reject) => {
    const done = (e: Error | undefined): void => it.end((e2) => (e !== undefined ? reject(e) : e2 ? reject(e2) : resolve()));
    /** What `each` threw: the iterator ends when the read in flight then returns. */
    let failure: Error | undefined;
    const step = (): void =>
      binding.iterator_next(it.context, (err, entries, finished) => {
        if (failure !== undefined) return done(failure);
        if (err) return done(err);
        // The next native read (on libuv's pool) runs while these entries are handed out.
        if (!finished) step();
        try {
          for (let i = entries.length - 1; i > 0; i -= 2) each(entries[i] as T, entries[i - 1] as T);
        } catch (e) {
          failure = e instanceof Error ? e : new Error(String(e));
        }
        if (finished) done(failure);
      });
    step();
  });
}

/**
 * What a backend does with a database found corrupt (state.onCorruption): throws
 * (`fail`), or moves its directory aside and gives a fresh, empty one (`rebuild`).
 * `db` is the damaged database, closed first; undefined when it did not open.
 */
type OnDamage = (e: unknown, db: LevelDown | undefined) => Promise<LevelDown>;

class RocksEngine implements Engine {
  readonly where: string;
  /** Keys sort as their bytes, a key's versions by id, newest first (versionKey). */
  readonly grouped = true;
  /**
   * The read of every record but the versions (which the restore reads anyway), begun
   * at open: it makes RocksDB read every block of them. Every operation waits for
   * it; scan() reads the versions meanwhile. Rejects (never unhandled) if it finds damage.
   */
  private checked: Promise<void>;

  constructor(
    private db: LevelDown,
    dir: string,
    private readonly onDamage: OnDamage,
    /** Whether a checkpoint's batch is written with an fsync of the WAL. */
    private readonly sync: boolean,
  ) {
    this.where = `RocksDB state in ${dir}`;
    this.checked = checkRecords(db, [{ lt: V_START }, { gte: V_END }]);
    this.checked.catch(() => undefined);
  }

  /**
   * Waits for the check begun at open. A damaged database follows state.onCorruption:
   * this throws (`fail`), or goes on with a fresh, empty one (`rebuild`).
   */
  private async ready(): Promise<void> {
    try {
      await this.checked;
    } catch (e) {
      if (!isCorruption(e)) throw e;
      await this.damaged(e);
    }
  }

  /** The database is damaged (error `e`): onDamage throws, or this goes on with an empty one. */
  private async damaged(e: unknown): Promise<void> {
    // The check's iterator ends before the database may close.
    await this.checked.catch(() => undefined);
    const fresh = await this.onDamage(e, this.db);
    this.db = fresh;
    this.checked = Promise.resolve();
    this.floor = 0;
    this.nextFloor = undefined;
  }

  async write(id: number, writes: readonly VersionWrite[]): Promise<void> {
    await this.ready();
    // Keys and values of the whole batch in one buffer, each op a view of it: RocksDB
    // copies them into its WriteBatch at once.
    let size = 0;
    for (const w of writes) size += VK_EXTRA + 5 + 6 * w.key.length + 5 + (w.value === null ? 1 : 4 * Math.ceil(w.value.length / 3));
    const b = Buffer.allocUnsafeSlow(size);
    const batch = this.db.batch();
    let p = 0;
    for (const w of writes) {
      const vk = p;
      const len = putVersionKey(b, p, w.key, id);
      p += VK_EXTRA + len;
      const jk = p;
      b[p] = J;
      b.writeUInt32BE(id, p + 1);
      b.copy(b, p + 5, vk + 9, vk + 9 + len);
      p += 5 + len;
      const jv = p;
      b.writeUInt32BE(w.prev === 0 ? NONE : w.prev, p);
      b[p + 4] = w.value === null ? TOMBSTONE : PUT;
      p += 5;
      const vv = p;
      p += w.value === null ? b.write(TOMBSTONE_TEXT, p, 'latin1') : b.write(w.value.toString('base64'), p, 'latin1');
      batch.put(b.subarray(vk, vk + VK_EXTRA + len), b.subarray(vv, p));
      if (needsJournal(w)) batch.put(b.subarray(jk, jk + 5 + len), b.subarray(jv, jv + 5));
    }
    return call((cb) => batch.write({ sync: this.sync }, cb));
  }

  async read(key: string, id: number): Promise<Buffer | null | undefined> {
    await this.ready();
    const [v] = await call<Array<string | undefined>>((cb) => this.db.getMany([versionKey(key, id)], { asBuffer: false }, cb));
    return v === undefined ? undefined : this.decodeValue(v, key, id);
  }

  async scan(each: (r: VersionRecord) => void): Promise<void> {
    // One record and one value buffer, handed out again for every version (see Engine.scan).
    const r: VersionRecord = { key: '', id: 0, value: null };
    let scratch = Buffer.allocUnsafeSlow(4096);
    const record = (k: string, v: string): void => {
      const id = k.length >= VK_EXTRA ? versionIdOf(k) : -1;
      if (id < 0) throw this.corrupt(`the version key ${JSON.stringify(k)}`);
      r.key = k.slice(9, k.length - 8);
      r.id = id;
      if (scratch.length < v.length) scratch = Buffer.allocUnsafeSlow(2 * v.length);
      r.value = this.decodeValue(v, r.key, id, scratch);
      each(r);
    };
    // The versions are read here, the rest by the check begun at open: a damaged block
    // in either is found before the restore ends, and the restore fails with StateCorrupt
    // (the caller drops what it rebuilt) once the database was moved aside (`rebuild`).
    try {
      await eachText(this.db, { gte: V_START, lt: V_END }, record);
      await this.checked;
    } catch (e) {
      if (!isCorruption(e)) throw e;
      await this.damaged(e);
      throw new StateCorrupt(`${this.where} was corrupt (${(e as Error).message}) and is empty now`);
    }
  }

  async dropNewer(id: number, versions: readonly VersionRef[]): Promise<void> {
    await this.ready();
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
    await this.ready();
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
    await this.ready();
    let size = 0;
    for (const v of versions) size += VK_EXTRA + 3 * v.key.length;
    const b = Buffer.allocUnsafeSlow(Math.max(size, 1));
    const batch = this.db.batch();
    let p = 0;
    for (const v of versions) {
      const len = putVersionKey(b, p, v.key, v.id);
      batch.del(b.subarray(p, p + VK_EXTRA + len));
      p += VK_EXTRA + len;
    }
    for (const e of entries) batch.del(e.raw as Buffer);
    const next = this.nextFloor;
    this.nextFloor = undefined;
    await call((cb) => batch.write({ sync: false }, cb));
    if (next !== undefined) this.floor = Math.max(this.floor, next);
  }

  async clear(): Promise<void> {
    this.floor = 0;
    this.nextFloor = undefined;
    try {
      await this.ready();
      await call((cb) => this.db.clear({}, cb));
    } catch (e) {
      if (!isCorruption(e)) throw e;
      // Damage in what was to be deleted anyway: state.onCorruption still decides.
      await this.damaged(e);
    }
    await call((cb) => this.db.batch([{ type: 'del', key: SYNC_KEY }], { sync: true }, cb));
  }

  async count(): Promise<RecordCounts> {
    await this.ready();
    const c: RecordCounts = { versions: 0, journal: 0 };
    for await (const [k] of this.db.iterator({ values: false })) {
      if (k[0] === V) c.versions++;
      else if (k[0] === J) c.journal++;
    }
    return c;
  }

  async close(): Promise<void> {
    // The check's iterator must end before the database closes.
    await this.checked.catch(() => undefined);
    await call((cb) => this.db.close(cb));
  }

  /**
   * A version's value, or null for a tombstone: its base64 decoded into a small Buffer
   * of the pool (no native allocation), or into `into` (room for v.length bytes; the
   * value is a view of it). Damage that leaves it readable is the restore's digest's to find.
   */
  private decodeValue(v: string, key: string, id: number, into?: Buffer): Buffer | null {
    if (v === TOMBSTONE_TEXT) return null;
    if (v.length % 4 !== 0) throw this.corrupt(`version ${id} of key ${JSON.stringify(key)}`);
    return into === undefined ? Buffer.from(v, 'base64') : into.subarray(0, into.write(v, 0, 'base64'));
  }

  private corrupt(what: string): StateError {
    return new StateCorrupt(`${this.where}: ${what} is corrupt`);
  }
}

/** RocksDB reports damaged files (a bad checksum, a garbled MANIFEST or CURRENT, a missing table file) as Status::Corruption. */
function isCorruption(e: unknown): boolean {
  return e instanceof Error && !(e instanceof WeirError) && /\bCorruption\b/.test(e.message);
}

/**
 * Opens the database in `dir` (a garbled CURRENT or MANIFEST fails here), in today's
 * layout. A damaged table file is found only when its blocks are read: see RocksEngine.
 */
async function openDb(dir: string): Promise<LevelDown> {
  const db = rocksdb(dir);
  await call((cb) => db.open({ createIfMissing: true, errorIfExists: false }, cb));
  try {
    await upgradeLegacy(db);
    return db;
  } catch (e) {
    await call((cb) => db.close(cb)).catch(() => undefined);
    throw e;
  }
}

/**
 * Reads the records of the ranges once, so that damage to a block's structure is found
 * (the package's iterators read without block checksums: docs/internals.md). Only
 * that: nothing is handed to JavaScript.
 */
async function checkRecords(db: LevelDown, ranges: readonly RangeOptions[]): Promise<void> {
  for (const r of ranges) await readRange(db, { ...r, keys: false, values: false, keyAsBuffer: false, valueAsBuffer: false, highWaterMark: READ_BYTES }, () => {});
}

/**
 * Rewrites the versions of the earlier, binary layout ('v' | u32 len | key | u32
 * (0xffffffff - id) -> u8 kind | value) in today's, in one synced batch: the database
 * holds either layout whole, whenever it crashes.
 */
async function upgradeLegacy(db: LevelDown): Promise<void> {
  const batch = db.batch();
  let n = 0;
  await eachEntry(db, { gte: LEGACY_START, lt: LEGACY_END }, (k, v) => {
    const len = k.length >= 9 ? k.readUInt32BE(1) : -1;
    const kind = v.length >= 1 ? v[0] : -1;
    if (len < 0 || k.length !== 9 + len || (kind !== PUT && kind !== TOMBSTONE) || (kind === TOMBSTONE && v.length !== 1))
      throw new Error(`Corruption: a version record of the earlier layout (key ${k.toString('hex')}) is malformed`);
    const nk = Buffer.allocUnsafe(VK_EXTRA + len);
    nk[0] = V;
    putHex8(nk, 1, len);
    k.copy(nk, 9, 5, 5 + len);
    putHex8(nk, 9 + len, k.readUInt32BE(5 + len));
    batch.put(nk, Buffer.from(kind === PUT ? v.toString('base64', 1) : TOMBSTONE_TEXT, 'latin1'));
    batch.del(k);
    n++;
  });
  if (n > 0) await call((cb) => batch.write({ sync: true }, cb));
}

export class RocksDbStateBackend implements StateBackend {
  readonly kind = 'rocksdb' as const;
  private readonly stores = new OpenStores();
  private readonly opening = new Set<number>();
  private readonly onCorruption: CorruptionPolicy;
  private readonly sync: boolean;
  onWarning?: (message: string, fields: Record<string, unknown>) => void;

  constructor(
    readonly dir: string,
    opts: { onCorruption?: CorruptionPolicy; sync?: boolean } = {},
  ) {
    this.onCorruption = opts.onCorruption ?? 'fail';
    this.sync = opts.sync ?? true;
  }

  async open(partition: number): Promise<PartitionStore> {
    const dir = join(this.dir, `partition-${partition}`);
    this.stores.check(partition, () => `the RocksDB state in ${dir}`, this.opening.has(partition));
    let db: LevelDown;
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
      const onDamage: OnDamage = (e, damaged) => this.damaged(partition, dir, e, damaged);
      try {
        db = await openDb(dir);
      } catch (e) {
        if (!isCorruption(e)) throw e;
        db = await onDamage(e, undefined);
      }
      return this.stores.add(partition, new RocksEngine(db, dir, onDamage, this.sync));
    } catch (e) {
      if (e instanceof WeirError) throw e;
      throw new StateError(`cannot open the RocksDB state database in ${dir}: ${(e as Error).message}`, { domain: 'external', cause: e });
    } finally {
      this.opening.delete(partition);
    }
  }

  /**
   * Partition `partition`'s database in `dir` is corrupt (error `e`; `db` open, or
   * undefined): state.onCorruption `fail` throws naming the directory and what to do;
   * `rebuild` moves the directory aside, warns, and opens an empty one in its place.
   */
  private async damaged(partition: number, dir: string, e: unknown, db: LevelDown | undefined): Promise<LevelDown> {
    const what = `the RocksDB state of partition ${partition} in ${dir} is corrupt (${(e as Error).message})`;
    if (this.onCorruption === 'fail')
      throw new StateError(
        `${what}: move that directory away (or delete it) to rebuild the partition from the earliest offset of its topic, or set state.onCorruption: rebuild to do so by itself`,
        { domain: 'external', cause: e },
      );
    if (db !== undefined) await call((cb) => db.close(cb)).catch(() => undefined);
    try {
      // Kept, not deleted: whoever looks into the damage later has the files.
      const aside = `${dir}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      await rename(dir, aside);
      this.onWarning?.(`${what}: moved it to ${aside}; partition ${partition} is rebuilt from the earliest offset of its topic`, { partition, dir, movedTo: aside });
      await mkdir(dir, { recursive: true });
      return await openDb(dir);
    } catch (e2) {
      if (e2 instanceof WeirError) throw e2;
      throw new StateError(`cannot open the RocksDB state database in ${dir}: ${(e2 as Error).message}`, { domain: 'external', cause: e2 });
    }
  }

  close(): Promise<void> {
    return this.stores.close();
  }
}
