// Opening the configured state backend. Each backend's module (and its client library:
// ioredis, the rocksdb binding) is loaded when that backend is opened, not before: the
// state thread loads only the one it runs, which shortens every start.
import { ConfigError } from '../errors/errors';
import type { CorruptionPolicy, StateBackend, StateBackendConfig, StateBackendKind } from './backend';
import { MemoryStateBackend } from './memory';
import type { RedisStateBackend } from './redis';
import type { RocksDbStateBackend } from './rocksdb';
import { ThreadStateBackend } from './thread';

/** The default key prefix of the Redis backend. */
export const DEFAULT_REDIS_PREFIX = 'weir';

/** The loose form the config file's `state` section has (src/config.ts): `backend` must be set, and its `dir` / `url`. */
export interface StateBackendOptions {
  backend?: StateBackendKind;
  dir?: string;
  url?: string;
  prefix?: string;
  onCorruption?: CorruptionPolicy;
  /** RocksDB: whether checkpoints are fsynced (backend.ts, StateBackendConfig). @default true */
  sync?: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const rocksdb = (): typeof RocksDbStateBackend => (require('./rocksdb') as typeof import('./rocksdb')).RocksDbStateBackend;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const redis = (): typeof RedisStateBackend => (require('./redis') as typeof import('./redis')).RedisStateBackend;

/**
 * Opens the configured backend. `instance` namespaces the Redis keys
 * (`${prefix}:${instance}:partition-N:`; `weir run` passes the consumer group, whose
 * partitions they are); RocksDB uses `${dir}/partition-N/` as is.
 * Redis connects here (and fails naming the URL); RocksDB opens a partition's database in open().
 * `thread`: the backend runs on a thread of its own (thread.ts), as `weir run` has it,
 * at nice value `nice` (priority.ts; 0 or none leaves it).
 */
export async function openStateBackend(cfg: StateBackendConfig | StateBackendOptions, instance: string, opts: { thread?: boolean; nice?: number } = {}): Promise<StateBackend> {
  if (instance === '') throw new ConfigError('the state backend needs a non-empty instance name');
  const need = (v: string | undefined, name: string): string => {
    if (v === undefined || v === '') throw new ConfigError(`state.${name}: required for the ${cfg.backend} state backend`);
    return v;
  };
  if (opts.thread === true) {
    // Checked here, as below, so that a config error reads the same either way.
    if (cfg.backend === 'rocksdb') need(cfg.dir, 'dir');
    else if (cfg.backend === 'redis') need(cfg.url, 'url');
    else if (cfg.backend !== 'memory') throw new ConfigError(`state.backend: ${String(cfg.backend)} is not a state backend (memory, rocksdb, redis)`);
    return ThreadStateBackend.start(cfg as StateBackendConfig, instance, opts.nice);
  }
  switch (cfg.backend) {
    case 'memory':
      return new MemoryStateBackend(instance);
    case 'rocksdb':
      return new (rocksdb())(need(cfg.dir, 'dir'), { onCorruption: (cfg as StateBackendOptions).onCorruption ?? 'fail', sync: (cfg as StateBackendOptions).sync ?? true });
    case 'redis':
      return redis().connect(need(cfg.url, 'url'), cfg.prefix ?? DEFAULT_REDIS_PREFIX, instance);
    default:
      throw new ConfigError(`state.backend: ${String(cfg.backend)} is not a state backend (memory, rocksdb, redis)`);
  }
}
