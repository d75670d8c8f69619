// The durable state backends (design: backend.ts; the shared multi-version logic:
// versioned.ts; storage: memory.ts, rocksdb.ts, redis.ts; any of them on a thread of
// its own: thread.ts).
export { StateError, StateCorrupt, summarize, xxh64, type DigestAlgorithm } from './backend';
export type { CorruptionPolicy, PartitionStore, StateBackend, StateBackendConfig, StateBackendKind, StateSummary } from './backend';
export { MAX_STATE_ID, VersionedStore, type RecordCounts } from './versioned';
export { MemoryStateBackend } from './memory';
export { RocksDbStateBackend } from './rocksdb';
export { RedisStateBackend } from './redis';
export { ThreadStateBackend } from './thread';
export { ChangeBatchWriter, readChangeBatch, type ChangeBatch } from './batch';
export { DEFAULT_REDIS_PREFIX, openStateBackend, type StateBackendOptions } from './open';
