// Checkpoint metadata on disk: `dir/checkpoint-N/metadata.json`, written last and
// atomically. The window state a checkpoint stands for lives in the state backend
// under version N (src/state/); the metadata records, per partition, the Kafka
// offset to resume from, the max event time, and the digest and size of that
// state, so recovery can verify the state it reads back, whatever the backend.
//
// Atomicity: the metadata is written into a temporary directory (`.tmp-…`),
// fsynced, renamed to `checkpoint-N`, and the parent directory is fsynced. A crash
// at any instant leaves either no `checkpoint-N` or a complete one; leftovers of a
// crash (temporary directories) are removed by `init()`. Where the checkpoints are a
// cache of a durable copy elsewhere (a changelog), nothing is fsynced (`sync: false`):
// a crash of the process loses nothing (the writes are in the kernel), one of the
// machine may lose or tear the newest checkpoints, which are then skipped as below,
// or fail to verify against their state. The metadata carries a
// SHA-256 checksum of its own content, so a truncated or corrupted file is
// recognised and skipped (readNewest tries the next older one).
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { WeirError } from '../errors/errors';
import { fileError } from '../errors/files';
import type { StateSummary } from '../state';
import { faultPoint } from './faults';

/**
 * 2: state digests of XXH64 terms; 1 (still read): of SHA-256 terms (see
 * DigestAlgorithm in src/state/backend.ts).
 */
export const METADATA_VERSION = 2;
const READABLE_VERSIONS: ReadonlySet<unknown> = new Set([1, 2]);
const NAME = /^checkpoint-(\d+)$/;
const TMP_PREFIX = '.tmp-checkpoint-';
/** errno codes that say what is wrong with the checkpoint directory itself (see write()). */
const WRITE_FAILURES: ReadonlySet<string> = new Set(['EROFS', 'EACCES', 'EPERM', 'EIO', 'ENOSPC', 'EDQUOT', 'EMFILE', 'ENFILE']);

/** A watermark in JSON: ±Infinity has no JSON number. */
export type JsonTime = number | 'Infinity' | '-Infinity';
export const toJsonTime = (t: number): JsonTime => (t === Infinity ? 'Infinity' : t === -Infinity ? '-Infinity' : t);
export const fromJsonTime = (t: JsonTime): number => (t === 'Infinity' ? Infinity : t === '-Infinity' ? -Infinity : t);

export interface PartitionCheckpoint {
  partition: number;
  /** Next offset to read: every record before it is in the state. */
  offset: string;
  /** Max valid event time the partition has sent (its watermark is this minus the out-of-orderness bound). */
  maxEventTimeMs: JsonTime;
  /** The partition's state as of this checkpoint, as the backend summarised it. */
  state: StateSummary;
  /** With a changelog: the changelog offset after this checkpoint's transaction (the local state is the changelog up to it). */
  changelogOffset?: string;
  /**
   * With a changelog: W as the partition's windows saw it (its changelog record's W:
   * never below the W its restored state stood at, which may be above the instance's
   * `watermarkMs`). Its windows with end <= this have fired.
   */
  watermarkMs?: JsonTime;
}

export interface CheckpointMetadata {
  version: 1 | typeof METADATA_VERSION;
  id: number;
  createdAt: string;
  instanceId: string;
  backend: string;
  /** The source's W when the checkpoint was taken (windows with end <= W have fired). */
  watermarkMs: JsonTime;
  /** Fingerprint of the aggregations (names and windows): state is only valid for the same ones. */
  aggregations: string;
  partitions: PartitionCheckpoint[];
  /** SHA-256 (hex) of the JSON of every other field, in this order. */
  checksum: string;
}

export type CheckpointContent = Omit<CheckpointMetadata, 'checksum' | 'version'>;

/** Why a checkpoint cannot be used. */
export class CheckpointCorrupt extends WeirError {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`checkpoint ${path}: ${reason}`, { domain: 'internal' });
  }
}

export function checksumOf(m: Omit<CheckpointMetadata, 'checksum'>): string {
  const { version, id, createdAt, instanceId, backend, watermarkMs, aggregations, partitions } = m;
  const body = JSON.stringify({ version, id, createdAt, instanceId, backend, watermarkMs, aggregations, partitions });
  return createHash('sha256').update(body).digest('hex');
}

async function fsyncPath(path: string, flags = 'r'): Promise<void> {
  const fh = await open(path, flags);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class CheckpointStore {
  constructor(
    readonly dir: string,
    /** Whether a checkpoint is fsynced before write() resolves (false: see the top of this file). */
    private readonly opts: { sync?: boolean } = {},
  ) {}

  /** Creates the directory and removes temporary directories a crash left behind. Returns their names. */
  async init(): Promise<string[]> {
    try {
      await mkdir(this.dir, { recursive: true });
    } catch (e) {
      throw fileError(e, `checkpoint.dir: cannot create ${this.dir}`, this.dir, 'user');
    }
    try {
      // At start, not at the first checkpoint, after results were written.
      await access(this.dir, constants.W_OK);
    } catch (e) {
      throw fileError(e, `checkpoint.dir: cannot write to ${this.dir}`, this.dir, 'user');
    }
    const removed: string[] = [];
    try {
      for (const name of await readdir(this.dir)) {
        if (!name.startsWith(TMP_PREFIX)) continue;
        await rm(join(this.dir, name), { recursive: true, force: true });
        removed.push(name);
      }
    } catch (e) {
      throw fileError(e, `checkpoint.dir: cannot clean up ${this.dir}`, this.dir);
    }
    return removed;
  }

  /** Ids of the checkpoint directories present, newest first (whether or not they verify). */
  async ids(): Promise<number[]> {
    const ids: number[] = [];
    for (const name of await readdir(this.dir)) {
      const m = NAME.exec(name);
      if (m !== null) ids.push(Number(m[1]));
    }
    return ids.sort((a, b) => b - a);
  }

  pathOf(id: number): string {
    return join(this.dir, `checkpoint-${id}`, 'metadata.json');
  }

  /** Reads and verifies checkpoint `id`; throws CheckpointCorrupt saying what is wrong. */
  async read(id: number): Promise<CheckpointMetadata> {
    const path = this.pathOf(id);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      throw new CheckpointCorrupt(path, `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    let m: CheckpointMetadata;
    try {
      m = JSON.parse(text) as CheckpointMetadata;
    } catch {
      throw new CheckpointCorrupt(path, `is not valid JSON (truncated or corrupted, ${text.length} bytes)`);
    }
    if (typeof m !== 'object' || m === null || !READABLE_VERSIONS.has(m.version)) throw new CheckpointCorrupt(path, `has an unknown version ${JSON.stringify((m as { version?: unknown } | null)?.version)} (expected 1 or ${METADATA_VERSION})`);
    if (m.checksum !== checksumOf(m)) throw new CheckpointCorrupt(path, 'checksum does not match its content');
    if (m.id !== id) throw new CheckpointCorrupt(path, `holds id ${m.id}, not ${id}`);
    return m;
  }

  /**
   * Writes checkpoint `content.id` atomically and durably. Fails (without touching
   * an existing one) if that id exists already.
   */
  async write(content: CheckpointContent): Promise<CheckpointMetadata> {
    try {
      return await this.writeUnchecked(content);
    } catch (e) {
      // A read-only, unwritable, full or failing file system is named once, here; anything
      // else (an id that exists, a crash point) goes on as it is.
      if (!WRITE_FAILURES.has((e as { code?: string } | null)?.code ?? '')) throw e;
      throw fileError(e, `checkpoint.dir: cannot write checkpoint ${content.id} in ${this.dir}`, this.dir);
    }
  }

  private async writeUnchecked(content: CheckpointContent): Promise<CheckpointMetadata> {
    const base: Omit<CheckpointMetadata, 'checksum'> = { version: METADATA_VERSION, ...content };
    const meta: CheckpointMetadata = { ...base, checksum: checksumOf(base) };
    const sync = this.opts.sync ?? true;
    const tmp = join(this.dir, `${TMP_PREFIX}${content.id}-${process.pid}`);
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp);
    const file = join(tmp, 'metadata.json');
    const fh = await open(file, 'wx');
    try {
      await fh.writeFile(JSON.stringify(meta, null, 2) + '\n');
      if (sync) await fh.sync();
    } finally {
      await fh.close();
    }
    if (sync) await fsyncPath(tmp);
    faultPoint('metadata-staged');
    // rename(2) onto an existing non-empty directory fails: an id is never reused.
    await rename(tmp, join(this.dir, `checkpoint-${content.id}`));
    if (sync) await fsyncPath(this.dir);
    return meta;
  }

  /** Deletes every checkpoint older than the newest `retain`. Returns the oldest id kept (or undefined). */
  async retain(retain: number): Promise<number | undefined> {
    const ids = await this.ids();
    for (const id of ids.slice(retain)) await rm(join(this.dir, `checkpoint-${id}`), { recursive: true, force: true });
    return ids.slice(0, retain).at(-1);
  }
}
