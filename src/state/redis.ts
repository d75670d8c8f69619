// The Redis state backend: the records of versioned.ts (design: backend.ts), per
// partition in two keys under `${prefix}:${instance}:partition-N:` (`weir run` names the
// consumer group there: a partition's state is the group's, found by any of its instances):
//
//   …:v  hash         field `${id}:${key}`  ->  u8 kind (1 put, 0 tombstone) | value
//   …:j  sorted set   score id, member `${id}:${prev}:${kind}:${key}` (prev 0: none)
//
// (the id comes first and has no ':', so a key may contain anything). A checkpoint's
// versions and journal entries go in one MULTI/EXEC, so they appear atomically; they
// are as durable as the server's persistence (AOF with appendfsync always for fsync).
// restore(id) HSCANs the hash once (HDEL of the versions > id and ZREMRANGEBYSCORE of the
// journal > id in one MULTI/EXEC); prune(R) reads the journal by score <= R (the changes of
// the dropped checkpoints only) and HDELs / ZREMs in one MULTI/EXEC per chunk.
// One connection per backend, shared by its stores. On Redis Cluster the two keys of a
// partition would need a hash tag to share a slot: not supported.
import Redis from 'ioredis';
import type { PartitionStore, StateBackend } from './backend';
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

const PUT = 1;
const TOMBSTONE = 0;
/** Fields / members per command inside a MULTI. */
const CHUNK = 1000;

type Multi = ReturnType<Redis['multi']>;

async function exec(m: Multi): Promise<void> {
  const res = await m.exec();
  if (res === null) throw new Error('MULTI/EXEC was aborted');
  for (const [err] of res) if (err) throw err;
}

function chunks<T>(xs: readonly T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

const field = (key: string, id: number): string => `${id}:${key}`;

class RedisEngine implements Engine {
  readonly where: string;
  private readonly v: string;
  private readonly j: string;

  constructor(
    private readonly redis: Redis,
    base: string,
  ) {
    this.where = `Redis state under ${base}`;
    this.v = `${base}v`;
    this.j = `${base}j`;
  }

  async write(id: number, writes: readonly VersionWrite[]): Promise<void> {
    const m = this.redis.multi();
    for (const part of chunks(writes, CHUNK)) {
      const fv: Array<string | Buffer> = [];
      const sm: Array<string | number> = [];
      for (const w of part) {
        fv.push(field(w.key, id), w.value === null ? Buffer.from([TOMBSTONE]) : Buffer.concat([Buffer.from([PUT]), w.value]));
        if (needsJournal(w)) sm.push(id, `${id}:${w.prev}:${w.value === null ? TOMBSTONE : PUT}:${w.key}`);
      }
      m.hset(this.v, ...fv);
      if (sm.length > 0) m.zadd(this.j, ...sm);
    }
    await exec(m);
  }

  async read(key: string, id: number): Promise<Buffer | null | undefined> {
    const v = await this.redis.hgetBuffer(this.v, field(key, id));
    return v === null ? undefined : this.decodeValue(v, key, id);
  }

  async scan(each: (r: VersionRecord) => void): Promise<void> {
    let cursor = '0';
    do {
      const [next, items] = await this.redis.hscanBuffer(this.v, cursor, 'COUNT', CHUNK);
      cursor = next.toString();
      for (let i = 0; i + 1 < items.length; i += 2) {
        const f = items[i]!.toString('utf8');
        const sep = f.indexOf(':');
        const id = Number(f.slice(0, sep));
        if (sep <= 0 || !Number.isSafeInteger(id)) throw this.corrupt(`hash field ${JSON.stringify(f)}`);
        const key = f.slice(sep + 1);
        each({ key, id, value: this.decodeValue(items[i + 1]!, key, id) });
      }
    } while (cursor !== '0');
  }

  async dropNewer(id: number, versions: readonly VersionRef[]): Promise<void> {
    const m = this.redis.multi();
    for (const part of chunks(versions, CHUNK)) m.hdel(this.v, ...part.map((x) => field(x.key, x.id)));
    m.zremrangebyscore(this.j, `(${id}`, '+inf');
    await exec(m);
  }

  async journal(upTo: number, limit: number): Promise<JournalEntry[]> {
    const members = await this.redis.zrangebyscore(this.j, '-inf', upTo, 'LIMIT', 0, limit);
    return members.map((raw) => {
      const m = /^(\d+):(\d+):([01]):/.exec(raw);
      if (m === null) throw this.corrupt(`journal member ${JSON.stringify(raw)}`);
      return { id: Number(m[1]), prev: Number(m[2]), tombstone: m[3] === String(TOMBSTONE), key: raw.slice(m[0].length), raw };
    });
  }

  async dropJournal(entries: readonly JournalEntry[], versions: readonly VersionRef[]): Promise<void> {
    const m = this.redis.multi();
    for (const part of chunks(versions, CHUNK)) m.hdel(this.v, ...part.map((x) => field(x.key, x.id)));
    for (const part of chunks(entries, CHUNK)) m.zrem(this.j, ...part.map((e) => e.raw));
    await exec(m);
  }

  async clear(): Promise<void> {
    await this.redis.del(this.v, this.j);
  }

  async count(): Promise<RecordCounts> {
    const [versions, journal] = await Promise.all([this.redis.hlen(this.v), this.redis.zcard(this.j)]);
    return { versions, journal };
  }

  async close(): Promise<void> {}

  private decodeValue(v: Buffer, key: string, id: number): Buffer | null {
    if (v.length >= 1 && v[0] === PUT) return v.subarray(1);
    if (v.length === 1 && v[0] === TOMBSTONE) return null;
    throw this.corrupt(`version ${id} of key ${JSON.stringify(key)}`);
  }

  private corrupt(what: string): StateError {
    return new StateCorrupt(`${this.where}: ${what} is corrupt`);
  }
}

/** The URL without its password, for messages. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

export class RedisStateBackend implements StateBackend {
  readonly kind = 'redis' as const;
  private readonly stores = new OpenStores();

  private constructor(
    private readonly redis: Redis,
    private readonly base: string,
  ) {}

  /** Connects (and fails with the URL named, password hidden, if it cannot). */
  static async connect(url: string, prefix: string, instance: string): Promise<RedisStateBackend> {
    const redis = new Redis(url, { lazyConnect: true });
    // Connection errors are emitted as events (and the commands waiting fail or are retried
    // after a reconnect); keep the last one for the message below.
    let lastError: Error | undefined;
    redis.on('error', (e: Error) => (lastError = e));
    try {
      await redis.connect();
      await redis.ping();
    } catch (e) {
      redis.disconnect();
      const cause = lastError ?? e;
      throw new StateError(`cannot connect to the Redis state backend at ${redact(url)}: ${(cause as Error).message}`, { domain: 'external', retriable: true, cause });
    }
    return new RedisStateBackend(redis, `${prefix}:${instance}:`);
  }

  async open(partition: number): Promise<PartitionStore> {
    const base = `${this.base}partition-${partition}:`;
    this.stores.check(partition, () => `the Redis state under ${base}`);
    return this.stores.add(partition, new RedisEngine(this.redis, base));
  }

  async close(): Promise<void> {
    try {
      await this.stores.close();
    } finally {
      if (this.redis.status !== 'end') await this.redis.quit().catch(() => this.redis.disconnect());
    }
  }
}
