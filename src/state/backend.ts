// The durable state backends: the API every backend implements, and what they share.
//
// Window state lives in WASM memory. At each checkpoint the processor stages in a
// partition's store the keys that changed (put) or disappeared (delete) since the
// last checkpoint (all of them at once as one encoded change batch: stage(), batch.ts), and `checkpoint(id)` writes them durably and atomically as
// version `id`. The checkpoint's metadata file (written by the caller after
// `checkpoint(id)` resolves) is the commit point, so a store is multi-version:
//
//   - every write is a new version `(key, id)`; older versions stay until prune();
//   - restore(id) answers, for each key, its newest version <= id (a tombstone means
//     absent) and deletes every version newer than `id`: a checkpoint that was written
//     but never committed (crash before the metadata) disappears, and a corrupt newest
//     checkpoint N leaves restore(N-1) working;
//   - a journal entry `(id, key) -> (previous version of key, put | tombstone)` is
//     written in the same atomic write as each version, so prune(R) walks only the
//     journal entries <= R (the changes of the checkpoints being dropped), deleting the
//     previous version each one names, and the tombstone itself when it is one:
//     no checkpoint >= R can need either. Never a full scan.
//
// Summary: `entries` and `bytes` (UTF-8 key + value bytes) of the live entries, and an
// order-independent digest: the sum mod 2^64 of XXH64 (seed 0) of
// utf8(key) ‖ 0x00 ‖ value, as 16 lowercase hex digits. (Checkpoints recorded before
// summed the first 8 bytes, big-endian, of sha256 of the same bytes: a restore of one
// of them is asked for that digest, see DigestAlgorithm.) It is maintained
// incrementally (per live key its current version and hash are kept in memory,
// filled by restore() and by each checkpoint), so checkpoint() costs O(changes).
// restore() computes it from the records it actually read, so comparing it with the
// digest recorded at checkpoint time detects corruption.
//
// The backends (memory.ts, rocksdb.ts, redis.ts) only store and find records; the
// versioning logic above is in versioned.ts, shared by all three.
import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WeirError, type ErrorDomain } from '../errors/errors';
import type { ChangeBatch } from './batch';

export type StateBackendKind = 'memory' | 'rocksdb' | 'redis';

/** What a backend does with a partition whose durable state is corrupt (config `state.onCorruption`). */
export type CorruptionPolicy = 'fail' | 'rebuild';

export type StateBackendConfig =
  | { backend: 'memory' }
  /**
   * `sync: false` (the default is true): checkpoints are written without an fsync, for
   * where they are a cache of another durable copy (a changelog): a crash of the
   * process loses nothing, one of the machine may lose the newest, which then no
   * longer verify and are skipped.
   */
  | { backend: 'rocksdb'; dir: string; onCorruption?: CorruptionPolicy; sync?: boolean }
  | { backend: 'redis'; url: string; prefix?: string };

export interface StateBackend {
  readonly kind: StateBackendKind;
  /**
   * The state store of one partition (RocksDB: its own database in `${dir}/partition-N/`;
   * Redis: keys under `${prefix}:${instance}:partition-N:`). A partition can be open once
   * at a time per backend. A store must be restore()d or clear()ed before get() and checkpoint().
   */
  open(partition: number): Promise<PartitionStore>;
  /** Closes every open store (and the backend's connection). */
  close(): Promise<void>;
  /** Where a backend says what it did by itself (RocksDB moving a corrupt database aside); set by its user. */
  onWarning?: (message: string, fields: Record<string, unknown>) => void;
}

export interface PartitionStore {
  readonly partition: number;
  /** Value of `key` as of the last completed checkpoint() (staged writes not included), or undefined. */
  get(key: string): Promise<Buffer | undefined>;
  /** Stage a write / delete for the next checkpoint; a later stage of the same key wins. Synchronous, no I/O. */
  put(key: string, value: Buffer): void;
  delete(key: string): void;
  /**
   * Stages every record of an encoded batch (batch.ts), in order, as put() and delete()
   * would. The batch's buffer belongs to the store from then on (the thread store
   * transfers it): the caller must not touch it again.
   */
  stage(batch: ChangeBatch): void;
  /**
   * Durably (fsync / Redis MULTI-EXEC) and atomically writes the changes staged before
   * this call as version `id` (> the last checkpoint or restore), clears them from the
   * stage. Resolves with the state's summary as of `id`. Cost proportional to the number
   * of staged changes. If it fails, the changes are staged again (unless restaged since).
   */
  checkpoint(id: number): Promise<StateSummary>;
  /**
   * The state as of checkpoint `id` (for each key its newest version <= id; deleted keys
   * absent). Also deletes every version newer than `id` (and its journal), so a later
   * checkpoint never mixes them in, and drops the stage. Afterwards get() answers as of `id`.
   */
  restore(id: number, digest?: DigestAlgorithm): Promise<{ entries: Map<string, Buffer>; summary: StateSummary }>;
  /**
   * restore(), its entries handed to `each` as they are read: change batches of puts
   * (batch.ts; each key once), a few thousand entries each, that `each` may keep. The
   * first is out while the next is made, so that the caller can use it meanwhile (the
   * thread store sends each as soon as the thread has it). Resolves with the summary
   * after the last. `each` must not throw: a caller keeps its own failures. The summary's
   * digest is of `digest`'s terms (xxh64 unless said; the store goes on in xxh64).
   */
  restoreBatches(id: number, each: (batch: ChangeBatch) => void, digest?: DigestAlgorithm): Promise<StateSummary>;
  /** Removes everything of this partition (a fresh start), and drops the stage. */
  clear(): Promise<void>;
  /** Drops the versions no checkpoint >= oldestRetained can need (walks the journal, not the state). */
  prune(oldestRetained: number): Promise<void>;
  /** Releases the store (RocksDB closes its database) without deleting anything. Idempotent. */
  close(): Promise<void>;
}

export interface StateSummary {
  entries: number;
  bytes: number;
  digest: string;
}

/** A state backend or store failed: `external` for I/O (disk, Redis), `internal` for misuse or corrupt records. */
export class StateError extends WeirError {
  constructor(message: string, opts: { domain: ErrorDomain; retriable?: boolean; cause?: unknown }) {
    super(message, opts);
  }
}

/** A record the backend holds is damaged or missing: recovery skips to an older checkpoint. */
export class StateCorrupt extends StateError {
  constructor(message: string) {
    super(message, { domain: 'internal' });
  }
}

/**
 * The hash of a state digest's terms: `xxh64` today, `sha256` in checkpoints recorded
 * before (their metadata's version says which).
 */
export type DigestAlgorithm = 'xxh64' | 'sha256';

/** The XXH64 of assembly/digest.ts, one instance per thread: bytes are copied into its memory at DATA. */
interface Xxh64 {
  memory: WebAssembly.Memory;
  bytes: Uint8Array;
  low: Uint32Array;
  hash: (ptr: number, len: number) => number;
  hashBatch: (ptr: number, len: number, count: number, out: number) => number;
}

const DATA = 8;
let xxh: Xxh64 | undefined;

function xxhInstance(): Xxh64 {
  if (xxh === undefined) {
    const module = new WebAssembly.Module(readFileSync(join(__dirname, '..', '..', '..', 'build', 'digest.wasm')));
    const e = new WebAssembly.Instance(module, {}).exports as {
      memory: WebAssembly.Memory;
      xxh64: (ptr: number, len: number) => number;
      xxh64Batch: (ptr: number, len: number, count: number, out: number) => number;
    };
    xxh = { memory: e.memory, bytes: new Uint8Array(e.memory.buffer), low: new Uint32Array(e.memory.buffer, 0, 1), hash: e.xxh64, hashBatch: e.xxh64Batch };
  }
  return xxh;
}

/** The instance, with room for `bytes` from DATA. */
function xxhRoom(bytes: number): Xxh64 {
  const x = xxhInstance();
  if (DATA + bytes > x.bytes.length) {
    x.memory.grow(Math.ceil((DATA + bytes - x.bytes.length) / 65536));
    x.bytes = new Uint8Array(x.memory.buffer);
    x.low = new Uint32Array(x.memory.buffer, 0, 1);
  }
  return x;
}

/** XXH64 (seed 0) of some bytes, as two unsigned 32-bit halves. */
export function xxh64(data: Uint8Array): { hi: number; lo: number } {
  const x = xxhRoom(data.length);
  x.bytes.set(data, DATA);
  const hi = x.hash(DATA, data.length) >>> 0;
  return { hi, lo: x.low[0]! };
}

/**
 * The xxh64 digest terms of every record of a change batch (batch.ts) in one call:
 * record i's term in `terms[2i]` (high half) and `terms[2i + 1]` (low half), a
 * delete's as 0, 0. `terms` is the instance's memory: valid until the next call.
 */
export function termsOfBatch(batch: ChangeBatch): Uint32Array {
  const len = batch.length, out = (DATA + len + 7) & ~7;
  const x = xxhRoom(out - DATA + 8 * batch.count);
  x.bytes.set(new Uint8Array(batch.buffer, 0, len), DATA);
  if (x.hashBatch(DATA, len, batch.count, out) !== batch.count) throw new Error(`a change batch of ${batch.count} records ends inside one`);
  return new Uint32Array(x.memory.buffer, out, 2 * batch.count);
}

/**
 * sha256 of some bytes, in one call (crypto.hash, Node 20.12 and later) where there is
 * one: a Hash object with its three calls costs twice as much.
 */
const sha256: (data: Uint8Array) => Buffer =
  typeof crypto.hash === 'function' ? (data) => crypto.hash('sha256', data, 'buffer') : (data) => crypto.createHash('sha256').update(data).digest();

/**
 * The digest term of an entry as two unsigned 32-bit halves (no BigInt per entry), from
 * the bytes key ‖ 0x00 ‖ value in one piece (a change batch holds them so).
 */
export function termOf(hashed: Uint8Array, algorithm: DigestAlgorithm = 'xxh64'): { hi: number; lo: number } {
  if (algorithm === 'xxh64') return xxh64(hashed);
  const h = sha256(hashed);
  return { hi: h.readUInt32BE(0), lo: h.readUInt32BE(4) };
}

let scratch = Buffer.allocUnsafeSlow(4096);

/** The bytes key ‖ 0x00 ‖ value (a view of a scratch buffer, valid until the next call). */
function entryBytes(key: string, value: Uint8Array): Buffer {
  const need = 3 * key.length + 1 + value.length;
  if (scratch.length < need) scratch = Buffer.allocUnsafeSlow(Math.max(need, 2 * scratch.length));
  const n = scratch.write(key, 0, 'utf8');
  scratch[n] = 0;
  scratch.set(value, n + 1);
  return scratch.subarray(0, n + 1 + value.length);
}

/** termOf() for a key and value held apart. */
export function termOfEntry(key: string, value: Uint8Array, algorithm: DigestAlgorithm = 'xxh64'): { hi: number; lo: number } {
  return termOf(entryBytes(key, value), algorithm);
}

/** A digest as the sum mod 2^64 of terms, kept in two unsigned 32-bit halves. */
export class DigestSum {
  hi = 0;
  lo = 0;

  add(hi: number, lo: number): void {
    const l = this.lo + lo;
    const carry = l >= 0x1_0000_0000 ? 1 : 0;
    this.lo = l >>> 0;
    this.hi = (this.hi + hi + carry) >>> 0;
  }

  sub(hi: number, lo: number): void {
    const l = this.lo - lo;
    const borrow = l < 0 ? 1 : 0;
    this.lo = l >>> 0;
    this.hi = (this.hi - hi - borrow) >>> 0;
  }

  reset(): void {
    this.hi = 0;
    this.lo = 0;
  }

  hex(): string {
    return this.hi.toString(16).padStart(8, '0') + this.lo.toString(16).padStart(8, '0');
  }
}

/** The summary of a whole map of entries, computed from scratch. */
export function summarize(entries: ReadonlyMap<string, Buffer>, algorithm: DigestAlgorithm = 'xxh64'): StateSummary {
  const sum = new DigestSum();
  let bytes = 0;
  for (const [k, v] of entries) {
    const t = termOfEntry(k, v, algorithm);
    sum.add(t.hi, t.lo);
    bytes += Buffer.byteLength(k, 'utf8') + v.length;
  }
  return { entries: entries.size, bytes, digest: sum.hex() };
}
