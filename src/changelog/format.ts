// The changelog's record format.
//
// A changelog partition holds the state of the input partition with the same number:
// one record per window, key = the state key (`name:key:start_end`, UTF-8, as in the
// state stores), value = the window's state bytes (which begin with their own format
// byte and version, STATE_MAGIC and STATE_VALUE_VERSION), a tombstone (null value)
// for a window that was purged. The topic is compacted, so it keeps the last record of
// every key.
//
// Each checkpoint's transaction ends with one record under the reserved key
// `@weir/partition` (aggregation names cannot contain `@`): where the partition
// stands at that checkpoint, as JSON (PartitionRecord).
import { createHash } from 'node:crypto';
import type { Config } from '../config';
import { ConfigError } from '../errors/errors';
import type { JsonTime } from '../checkpoint/store';

export const PARTITION_KEY = '@weir/partition';
export const CHANGELOG_FORMAT = 1;

export interface PartitionRecord {
  format: number;
  /** Next input offset to read: every record before it is in the state. */
  offset: string;
  /** Max valid event time the partition had sent. */
  maxEventTimeMs: JsonTime;
  /** W at the checkpoint: windows with end <= W had fired. */
  watermarkMs: JsonTime;
  /** The input topic. */
  topic: string;
  /** Per aggregation, a fingerprint of what its state means (aggregationFingerprints). */
  aggregations: Record<string, string>;
  /** Fingerprint of the event-time settings the state was built under. */
  eventTime: string;
}

const hash = (x: unknown): string => createHash('sha256').update(JSON.stringify(x)).digest('hex').slice(0, 16);

/** Per aggregation name: its group-by, value and window, hashed. */
export function aggregationFingerprints(cfg: Config): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of cfg.aggregations) out[a.name] = hash({ groupBy: a.groupBy, value: a.value, window: a.window });
  return out;
}

export function eventTimeFingerprint(cfg: Config): string {
  const { field, maxOutOfOrdernessMs, allowedLatenessMs } = cfg.eventTime;
  return hash({ field, maxOutOfOrdernessMs, allowedLatenessMs });
}

/** The partition record as read back, checked; throws a ConfigError naming what differs from `cfg`. */
export function checkPartitionRecord(text: string, cfg: Config, where: string): PartitionRecord {
  let r: PartitionRecord;
  try {
    r = JSON.parse(text) as PartitionRecord;
  } catch {
    throw new ConfigError(`${where}: its ${PARTITION_KEY} record is not JSON (${text.length} bytes)`);
  }
  if (typeof r !== 'object' || r === null || typeof r.offset !== 'string') throw new ConfigError(`${where}: its ${PARTITION_KEY} record is malformed`);
  if (r.format !== CHANGELOG_FORMAT) throw new ConfigError(`${where} was written in changelog format ${String(r.format)}; this version of Weir reads format ${CHANGELOG_FORMAT}`);
  const fresh = 'to start from scratch, use another source.groupId (and changelog.topic)';
  const topic = cfg.source.type === 'kafka' ? cfg.source.topic : '';
  if (r.topic !== topic) throw new ConfigError(`${where} holds the state of topic "${r.topic}", not "${topic}"; ${fresh}`);
  const mine = aggregationFingerprints(cfg);
  for (const [name, fp] of Object.entries(mine)) {
    const theirs = r.aggregations?.[name];
    if (theirs === undefined) throw new ConfigError(`${where} has no state for aggregation "${name}" (it holds ${Object.keys(r.aggregations ?? {}).map((n) => `"${n}"`).join(', ')}); ${fresh}`);
    if (theirs !== fp) throw new ConfigError(`${where}: aggregation "${name}" has another groupBy, value or window than when its state was written; ${fresh}`);
  }
  for (const name of Object.keys(r.aggregations ?? {}))
    if (mine[name] === undefined) throw new ConfigError(`${where} holds state of aggregation "${name}", which this config does not have; ${fresh}`);
  if (r.eventTime !== eventTimeFingerprint(cfg)) throw new ConfigError(`${where} was written with other eventTime settings (field, maxOutOfOrdernessMs or allowedLatenessMs); ${fresh}`);
  return r;
}
