// The multi-version partition store shared by every backend (design: backend.ts).
//
// A backend supplies an Engine: a place that stores version records `(key, id) ->
// value | tombstone` and journal entries `(id, key) -> (previous version, put |
// tombstone)`, writes a checkpoint's records atomically and durably, and finds them
// again. Everything else is here, identical for all backends:
//
//   - the stage: key -> value | null (delete), synchronous, a later stage wins;
//   - the index: per live key its current version id, digest term and size, so a
//     checkpoint names each key's previous version in the journal and updates
//     entries / bytes / digest in O(changes), and get() reads one record;
//   - checkpoint(id): one engine write of the staged versions + journal entries (none
//     for a key's first version: needsJournal()); a delete of a key that is not live
//     writes nothing;
//   - restore(id): one scan of all versions: per key the newest <= id wins (absent if a
//     tombstone); versions > id and journal entries > id are deleted; the index, the
//     summary and the returned entries are rebuilt from what was read;
//   - prune(R): in chunks, the journal entries <= R (oldest first): delete the previous
//     version each names (superseded at <= R, so no checkpoint >= R needs it), the
//     version itself if it is a tombstone, and the entry;
//   - every operation runs in call order through one queue, so a restore, checkpoint or
//     prune never interleaves with another on the same store.
//
// Version ids are integers in [1, MAX_STATE_ID]; 0 means "no previous version".
// A store opened on existing data does not know which versions are committed: it must
// be restore()d (or clear()ed) before get() and checkpoint().
import { classify } from '../errors/classify';
import { WeirError, messageOf } from '../errors/errors';
import { DigestSum, StateCorrupt, StateError, termOf, termOfEntry, termsOfBatch, type DigestAlgorithm, type PartitionStore, type StateSummary } from './backend';
import { ChangeBatchWriter, putAt, readChangeBatch, readChangeKeys, type ChangeBatch } from './batch';

/** The largest version id (RocksDB stores 0xffffffff - id in 4 bytes, and 0xffffffff means "none"). */
export const MAX_STATE_ID = 0xfffffffe;

/** One version to write; `value` null is a tombstone; `prev` is the key's previous version (0: none). */
export interface VersionWrite {
  key: string;
  value: Buffer | null;
  prev: number;
}

/**
 * Whether a write needs a journal entry: one names what prune() deletes once the
 * version is old enough (the key's previous version, the tombstone itself). A key's
 * first version after none (a put with no previous version) has nothing to delete,
 * so it gets none: a store whose keys are mostly new (a first checkpoint, sessions
 * that grow into new keys) writes and prunes half as many records.
 */
export function needsJournal(w: VersionWrite): boolean {
  return w.prev !== 0 || w.value === null;
}

/** A stored version; `value` null is a tombstone. */
export interface VersionRecord {
  key: string;
  id: number;
  value: Buffer | null;
}

export interface VersionRef {
  key: string;
  id: number;
}

export interface JournalEntry {
  id: number;
  key: string;
  /** The key's version before `id`, 0 if none. */
  prev: number;
  tombstone: boolean;
  /** The engine's own handle of the entry (its RocksDB key, its Redis member). */
  raw: Buffer | string;
}

export interface RecordCounts {
  versions: number;
  journal: number;
}

/** Storage of one partition's records (see the top of this file). Errors are raw; the store wraps them. */
export interface Engine {
  /** Names the storage in errors, e.g. `RocksDB state in /data/state/partition-3`. */
  readonly where: string;
  /** Atomically and durably writes the versions `(w.key, id)` and the journal entries of those that needsJournal(). */
  write(id: number, writes: readonly VersionWrite[]): Promise<void>;
  /** The version `(key, id)`: its value, null for a tombstone, undefined if it is not stored. */
  read(key: string, id: number): Promise<Buffer | null | undefined>;
  /**
   * Calls `each` with every stored version, in any order (duplicates allowed), but see
   * `grouped`. The record and its value are valid until `each` returns: an engine may
   * hand the same ones out again (a copy is what to keep).
   */
  scan(each: (r: VersionRecord) => void): Promise<void>;
  /** Whether scan() gives each key's versions one after the other, newest first, each once (RocksDB's key order). */
  readonly grouped?: boolean;
  /** Deletes the given versions and every journal entry with id > `id`. */
  dropNewer(id: number, versions: readonly VersionRef[]): Promise<void>;
  /** Up to `limit` journal entries with id <= `upTo`, oldest first. */
  journal(upTo: number, limit: number): Promise<JournalEntry[]>;
  /** Deletes the given journal entries and versions. */
  dropJournal(entries: readonly JournalEntry[], versions: readonly VersionRef[]): Promise<void>;
  /** Deletes every record. */
  clear(): Promise<void>;
  /** How many records are stored (tests, diagnostics). */
  count(): Promise<RecordCounts>;
  close(): Promise<void>;
}

/** How long after a restore the keys' map is built, unless an operation needs it sooner. */
const SETTLE_AFTER_MS = 1000;

interface IndexEntry {
  ver: number;
  /** The entry's digest term, in two unsigned 32-bit halves. */
  hi: number;
  lo: number;
  size: number;
}

/**
 * Per live key its IndexEntry, held in typed arrays by slot (a key's slot stays its
 * own until it is deleted): a restore of 100,000 keys makes no object per key. A
 * restore appends its keys (each once) and leaves them to be looked up later
 * (settle()): the map of slots is built after the restore has answered.
 */
class KeyIndex {
  private readonly slots = new Map<string, number>();
  /** Keys appended, not yet in `slots`: key `appended[j]` has slot j. */
  private appended: string[] = [];
  private free: number[] = [];
  private used = 0;
  ver: Uint32Array = new Uint32Array(1024);
  hi: Uint32Array = new Uint32Array(1024);
  lo: Uint32Array = new Uint32Array(1024);
  bytes: Uint32Array = new Uint32Array(1024);

  get size(): number {
    return this.slots.size + this.appended.length;
  }

  /** The slot of `key`; -1 if it is not live. */
  slotOf(key: string): number {
    this.settle();
    return this.slots.get(key) ?? -1;
  }

  /**
   * Adds `key`, which the index must not hold (a restore's: into an index just
   * cleared, each key once), its term to come (setTerm); its slot.
   */
  append(key: string, ver: number, size: number): number {
    if (this.slots.size > 0 || this.free.length > 0 || this.used !== this.appended.length) throw new Error('KeyIndex.append() after other changes');
    const i = this.used++;
    if (i >= this.ver.length) this.grow(2 * this.ver.length);
    this.appended.push(key);
    this.ver[i] = ver;
    this.bytes[i] = size;
    return i;
  }

  /** Puts the appended keys in the map of slots. */
  settle(): void {
    const keys = this.appended;
    if (keys.length === 0) return;
    this.appended = [];
    for (let j = 0; j < keys.length; j++) this.slots.set(keys[j]!, j);
  }

  /** Sets `key`'s entry, its term to come (setTerm); its slot. */
  put(key: string, ver: number, size: number): number {
    this.settle();
    let i = this.slots.get(key);
    if (i === undefined) {
      i = this.free.length > 0 ? this.free.pop()! : this.used++;
      if (i >= this.ver.length) this.grow(2 * this.ver.length);
      this.slots.set(key, i);
    }
    return this.set(i, ver, size);
  }

  /** Sets the entry of the live key in slot `i` (slotOf()), its term to come (setTerm); `i`. */
  set(i: number, ver: number, size: number): number {
    this.ver[i] = ver;
    this.bytes[i] = size;
    return i;
  }

  setTerm(i: number, hi: number, lo: number): void {
    this.hi[i] = hi;
    this.lo[i] = lo;
  }

  delete(key: string): void {
    this.settle();
    const i = this.slots.get(key);
    if (i === undefined) return;
    this.slots.delete(key);
    this.free.push(i);
  }

  clear(): void {
    this.slots.clear();
    this.appended = [];
    this.free = [];
    this.used = 0;
  }

  private grow(cap: number): void {
    const grown = (a: Uint32Array): Uint32Array => {
      const b = new Uint32Array(cap);
      b.set(a.subarray(0, Math.min(a.length, this.used)));
      return b;
    };
    this.ver = grown(this.ver);
    this.hi = grown(this.hi);
    this.lo = grown(this.lo);
    this.bytes = grown(this.bytes);
  }
}

/** A staged put: its value and, when it came in a change batch, the bytes key ‖ 0x00 ‖ value its digest term hashes. */
interface Staged {
  value: Buffer;
  hashed: Buffer | undefined;
}

/** A staged batch's index times this, plus a record's offset in it: a staged put's reference. */
const BATCH_REF = 2 ** 32;
const PRUNE_CHUNK = 5000;
/**
 * Entries per batch a restore hands out: the first reaches its user while the next is
 * made. The first batches are smaller (RESTORE_FIRST, doubling), so that the user
 * starts early.
 */
const RESTORE_CHUNK = 8192;
const RESTORE_FIRST = 1024;

function checkId(id: number, what: string, min: number): void {
  if (!Number.isSafeInteger(id) || id < min || id > MAX_STATE_ID)
    throw new StateError(`${what}: ${id} is not a valid checkpoint id (an integer from ${min} to ${MAX_STATE_ID})`, { domain: 'internal' });
}

export class VersionedStore implements PartitionStore {
  /**
   * Per key, its staged change: null for a delete, a put, or a number for a put staged
   * from a change batch: record `ref % 2^32` of stagedBatches[floor(ref / 2^32)],
   * made into views only if it is still the key's last change when written.
   */
  private staged = new Map<string, Staged | null | number>();
  private stagedBatches: Buffer[] = [];
  private readonly index = new KeyIndex();
  private readonly sum = new DigestSum();
  private bytes = 0;
  /** The checkpoint the index stands for; undefined until restore() or clear(). */
  private lastId: number | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;

  constructor(
    readonly partition: number,
    private readonly engine: Engine,
    private readonly onClose: () => void = () => {},
  ) {}

  /** Names the storage in errors (the engine's `where`). */
  get where(): string {
    return this.engine.where;
  }

  get(key: string): Promise<Buffer | undefined> {
    return this.run('get', async () => {
      this.loaded('get');
      const i = this.index.slotOf(key);
      if (i < 0) return undefined;
      const ver = this.index.ver[i]!;
      const v = await this.engine.read(key, ver);
      if (v === undefined || v === null)
        throw new StateCorrupt(`${this.engine.where}: version ${ver} of key ${JSON.stringify(key)} is missing`);
      return v;
    });
  }

  put(key: string, value: Buffer): void {
    this.open('put');
    if (typeof key !== 'string' || !Buffer.isBuffer(value))
      throw new StateError(`${this.engine.where}: put() needs a string key and a Buffer value`, { domain: 'internal' });
    this.staged.set(key, { value, hashed: undefined });
  }

  delete(key: string): void {
    this.open('delete');
    this.staged.set(key, null);
  }

  stage(batch: ChangeBatch): void {
    this.open('stage');
    const st = this.staged;
    const base = this.stagedBatches.length * BATCH_REF;
    try {
      this.stagedBatches.push(Buffer.from(batch.buffer, 0, batch.length));
      readChangeKeys(batch, (key, at, put) => st.set(key, put ? base + at : null));
    } catch (e) {
      throw new StateError(`${this.engine.where}: stage(): ${(e as Error).message}`, { domain: 'internal' });
    }
  }

  checkpoint(id: number): Promise<StateSummary> {
    const staged = this.staged;
    const batches = this.stagedBatches;
    this.staged = new Map();
    this.stagedBatches = [];
    const resolved = (s: Staged | null | number): Staged | null => (typeof s === 'number' ? putAt(batches[Math.floor(s / BATCH_REF)]!, s % BATCH_REF) : s);
    return this.run('checkpoint', async () => {
      try {
        this.loaded('checkpoint');
        checkId(id, `${this.engine.where}: checkpoint`, 1);
        if (id <= this.lastId!)
          throw new StateError(`${this.engine.where}: checkpoint ${id} is not newer than the last checkpoint or restore (${this.lastId})`, { domain: 'internal' });
        const index = this.index;
        const writes: VersionWrite[] = [];
        // Each key, its slot now (-1: not live) and its entry after (undefined: deleted).
        // Nothing else runs on the store meanwhile, so the slots stay as they are.
        const next: Array<[string, number, IndexEntry | undefined]> = [];
        for (const [key, staging] of staged) {
          const s = resolved(staging);
          const i = index.slotOf(key);
          const prev = i < 0 ? 0 : index.ver[i]!;
          if (s === null) {
            if (i < 0) continue; // not live: nothing to delete
            writes.push({ key, value: null, prev });
            next.push([key, i, undefined]);
          } else {
            writes.push({ key, value: s.value, prev });
            const t = s.hashed === undefined ? termOfEntry(key, s.value) : termOf(s.hashed);
            // The key's UTF-8 length: the hashed bytes are key, a zero byte and the value.
            const keyBytes = s.hashed === undefined ? Buffer.byteLength(key, 'utf8') : s.hashed.length - 1 - s.value.length;
            next.push([key, i, { ver: id, hi: t.hi, lo: t.lo, size: keyBytes + s.value.length }]);
          }
        }
        if (writes.length > 0) await this.engine.write(id, writes);
        const sum = this.sum;
        for (const [key, i, e] of next) {
          if (i >= 0) {
            sum.sub(index.hi[i]!, index.lo[i]!);
            this.bytes -= index.bytes[i]!;
          }
          if (e === undefined) index.delete(key);
          else {
            index.setTerm(i >= 0 ? index.set(i, e.ver, e.size) : index.put(key, e.ver, e.size), e.hi, e.lo);
            sum.add(e.hi, e.lo);
            this.bytes += e.size;
          }
        }
        this.lastId = id;
        return this.summary();
      } catch (e) {
        // Not written (or not known to be): stage the changes again, unless staged anew since.
        for (const [k, v] of staged) if (!this.staged.has(k)) this.staged.set(k, resolved(v));
        throw e;
      }
    });
  }

  async restore(id: number, digest?: DigestAlgorithm): Promise<{ entries: Map<string, Buffer>; summary: StateSummary }> {
    const entries = new Map<string, Buffer>();
    const summary = await this.restoreBatches(id, (batch) => readChangeBatch(batch, (key, value) => entries.set(key, value!)), digest);
    return { entries, summary };
  }

  restoreBatches(id: number, each: (batch: ChangeBatch) => void, digest: DigestAlgorithm = 'xxh64', chunk = RESTORE_CHUNK): Promise<StateSummary> {
    this.staged = new Map();
    this.stagedBatches = [];
    return this.run('restore', async () => {
      checkId(id, `${this.engine.where}: restore`, 0);
      this.reset();
      let w = new ChangeBatchWriter(1 << 21);
      let size = Math.min(chunk, RESTORE_FIRST);
      // The summary of a checkpoint recorded with another digest, beside the store's own.
      const other = digest === 'xxh64' ? undefined : new DigestSum();
      const index = this.index, sum = this.sum;
      // The index slots of the batch's records: their terms come when it is full.
      const slots = new Uint32Array(chunk);
      const send = (): void => {
        const batch = w.finish();
        // The batch holds each key ‖ 0x00 ‖ value in one piece: one hash call for all.
        const t = termsOfBatch(batch);
        for (let j = 0; j < batch.count; j++) {
          const hi = t[2 * j]!, lo = t[2 * j + 1]!;
          index.setTerm(slots[j]!, hi, lo);
          sum.add(hi, lo);
        }
        // Only a checkpoint recorded with SHA-256 terms (metadata version 1) asks for these.
        if (other !== undefined)
          readChangeBatch(batch, (_key, _value, hashed) => {
            const o = termOf(hashed!, digest);
            other.add(o.hi, o.lo);
          });
        each(batch);
      };
      const add = (r: VersionRecord): void => {
        if (r.value === null) return;
        const at = w.pos;
        w.put(r.key, r.value);
        // Key and value bytes: the record less its header and the zero byte between them.
        const bytes = w.pos - at - 9;
        slots[w.count - 1] = index.append(r.key, r.id, bytes);
        this.bytes += bytes;
        if (w.count === size) {
          send();
          size = Math.min(chunk, 2 * size);
          w = new ChangeBatchWriter(1 << 21);
        }
      };
      const newer: VersionRef[] = [];
      try {
        await this.readNewest(id, newer, add);
        await this.engine.dropNewer(id, newer);
      } catch (e) {
        // Half an index is no index: the store needs a restore or clear again.
        this.reset();
        this.lastId = undefined;
        throw e;
      }
      if (w.count > 0) send();
      this.lastId = id;
      const summary = this.summary();
      if (other !== undefined) summary.digest = other.hex();
      // The keys' map is built by the next operation that needs it, or a while after
      // the restore, not while the operator is being rebuilt from what it read.
      setTimeout(() => {
        this.tail = this.tail.then(() => index.settle());
      }, SETTLE_AFTER_MS).unref();
      return summary;
    });
  }

  /** Hands each key's newest version <= `id` to `add`, and the versions newer than `id` to `newer`. */
  private async readNewest(id: number, newer: VersionRef[], add: (r: VersionRecord) => void): Promise<void> {
    if (this.engine.grouped === true) {
      // Each key's newest version <= id is the first of its versions not newer than id:
      // batches go out while the engine reads.
      let last: string | undefined;
      return this.engine.scan((r) => {
        if (r.id > id) newer.push({ key: r.key, id: r.id });
        else if (r.key !== last) {
          last = r.key;
          add(r);
        }
      });
    }
    const best = new Map<string, VersionRecord>();
    await this.engine.scan((r) => {
      if (r.id > id) newer.push({ key: r.key, id: r.id });
      else {
        const b = best.get(r.key);
        if (b === undefined || r.id > b.id) best.set(r.key, { key: r.key, id: r.id, value: r.value === null ? null : Buffer.from(r.value) });
      }
    });
    for (const r of best.values()) add(r);
  }

  clear(): Promise<void> {
    this.staged = new Map();
    this.stagedBatches = [];
    return this.run('clear', async () => {
      await this.engine.clear();
      this.reset();
      this.lastId = 0;
    });
  }

  prune(oldestRetained: number): Promise<void> {
    return this.run('prune', async () => {
      checkId(oldestRetained, `${this.engine.where}: prune`, 0);
      for (;;) {
        const js = await this.engine.journal(oldestRetained, PRUNE_CHUNK);
        if (js.length === 0) return;
        const versions: VersionRef[] = [];
        for (const j of js) {
          if (j.prev !== 0) versions.push({ key: j.key, id: j.prev });
          if (j.tombstone) versions.push({ key: j.key, id: j.id });
        }
        await this.engine.dropJournal(js, versions);
        if (js.length < PRUNE_CHUNK) return;
      }
    });
  }

  /** Stored record counts (tests, diagnostics): stays O(live keys × retained versions) when pruned. */
  records(): Promise<RecordCounts> {
    return this.run('count', () => this.engine.count());
  }

  close(): Promise<void> {
    if (this.closing === undefined) {
      this.closing = this.tail.then(async () => {
        try {
          await this.engine.close();
        } catch (e) {
          throw this.wrap('close', e);
        } finally {
          this.onClose();
        }
      });
    }
    return this.closing;
  }

  private summary(): StateSummary {
    return { entries: this.index.size, bytes: this.bytes, digest: this.sum.hex() };
  }

  private reset(): void {
    this.index.clear();
    this.sum.reset();
    this.bytes = 0;
  }

  private open(op: string): void {
    if (this.closing !== undefined) throw new StateError(`${this.engine.where}: ${op}() after close()`, { domain: 'internal' });
  }

  private loaded(op: string): void {
    if (this.lastId === undefined)
      throw new StateError(`${this.engine.where}: ${op}() before restore() or clear(): the store does not know which versions are committed`, { domain: 'internal' });
  }

  private wrap(op: string, e: unknown): WeirError {
    if (e instanceof WeirError) return e;
    const msg = messageOf(e);
    return new StateError(`${this.engine.where}: ${op} failed: ${msg}`, { domain: 'external', retriable: classify(e) === 'transient', cause: e });
  }

  private run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    if (this.closing !== undefined) return Promise.reject(new StateError(`${this.engine.where}: ${op}() after close()`, { domain: 'internal' }));
    const p = this.tail.then(fn).catch((e: unknown) => {
      throw this.wrap(op, e);
    });
    this.tail = p.catch(() => undefined);
    return p;
  }
}

/**
 * The partition stores a backend has open: at most one per partition, forgotten when
 * it closes; none opened after close(). Every backend keeps its stores in one.
 */
export class OpenStores {
  private readonly stores = new Map<number, VersionedStore>();
  private closed = false;

  /**
   * Throws unless `partition` may be opened now. `where` names its state (for the
   * message); `busy`: the backend is opening it already.
   */
  check(partition: number, where: () => string, busy = false): void {
    if (!Number.isSafeInteger(partition) || partition < 0) throw new StateError(`${partition} is not a partition number`, { domain: 'internal' });
    if (this.closed) throw new StateError(`open(${partition}) after the state backend was closed`, { domain: 'internal' });
    if (busy || this.stores.has(partition)) throw new StateError(`${where()} is already open`, { domain: 'internal' });
  }

  /** The store of `partition` over `engine`, kept until it closes. */
  add(partition: number, engine: Engine): VersionedStore {
    const store: VersionedStore = new VersionedStore(partition, engine, () => {
      if (this.stores.get(partition) === store) this.stores.delete(partition);
    });
    this.stores.set(partition, store);
    return store;
  }

  /** Closes every store, even if some fail; throws the first failure. */
  async close(): Promise<void> {
    this.closed = true;
    const results = await Promise.allSettled([...this.stores.values()].map((s) => s.close()));
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }
}
