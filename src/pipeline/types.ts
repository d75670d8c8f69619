// The shapes that cross the pipeline: records in, results and dead letters out.

/** Raw records of one source partition: record i is buf[starts[i], ends[i]). */
export interface RecordBatch {
  buf: Buffer;
  starts: Uint32Array;
  ends: Uint32Array;
  n: number;
  partition: number;
  /**
   * Offset of record i: `offsets[i]` when given, else firstOffset + i (a file's line
   * index; Kafka offsets without gaps). Always the offset of record 0. Exact: the
   * Kafka source refuses offsets at or above 2^53.
   */
  firstOffset: number;
  /** Kafka, when the offsets of a batch have gaps (compaction, transaction markers); increasing. */
  offsets?: Float64Array;
  /** Kafka: the partition's high watermark when fetched (the offset its next record will get), for consumer lag. */
  highWatermark?: string;
  /**
   * Kafka: each record is a message value, not a line, so a blank one is dead-lettered
   * `malformed` instead of skipped: an empty or null value (a tombstone) is no event.
   */
  messages?: boolean;
  /**
   * Kafka: the offsets of the records whose message value was null (a tombstone);
   * absent when none was. Offsets, not indices, so that a batch cut at its front keeps them.
   */
  nullOffsets?: readonly number[];
  /** Kafka: the records scanned already, on the consumer's thread (ScanDecoder then only decodes). */
  scanned?: ScannedFields;
}

/**
 * What the core's scanner (assembly/scan.ts) wrote for each record of a batch: `paths`
 * field records of FIELD_BYTES per record, and a status byte per record, both from
 * record 0 of the batch on. Token offsets count from byte `base` of the batch's buffer.
 */
export interface ScannedFields {
  fields: Uint8Array;
  status: Uint8Array;
  base: number;
  paths: number;
}

/** The offset of record i of `b`. */
export function offsetOf(b: RecordBatch, i: number): number {
  return b.offsets === undefined ? b.firstOffset + i : b.offsets[i]!;
}

/** Control travels with the data as one tagged union. */
export type StreamMessage =
  | { kind: 'batch'; batch: RecordBatch }
  /** Wall-clock tick: lets idle partitions stop holding the watermark back. */
  | { kind: 'tick'; nowMs: number }
  | { kind: 'end' };

/** One firing of one window (docs/semantics.md, Results). Field order is the output order. */
export interface WindowResult {
  name: string;
  key: string;
  group: Record<string, string>;
  window: { start: number; end: number };
  results: { count: number; sum: number; avg: number; min: number; max: number; p50: number; p95: number; p99: number; stddev: number };
  late: boolean;
  emittedAt: number;
}

/**
 * Why a record is in the dead-letter queue. `malformed`, `invalid`, `late`: an input
 * event (docs/semantics.md). `undeliverable`: a result that a result sink did not take (its
 * write kept failing transiently until the retries ran out, or the sink refused that
 * record); see src/sinks/delivery.ts.
 */
export type DeadLetterReason = 'malformed' | 'invalid' | 'late' | 'undeliverable';

/** docs/semantics.md, Dead-letter records. Field order is the output order. */
export interface DeadLetter {
  /** The raw input text, unchanged; for `undeliverable`, the result's JSON as a JSON-lines sink writes it. */
  original_event: string;
  reason: DeadLetterReason;
  /** What was wrong; for `undeliverable`, the sink and its last error. */
  error: string;
  /** Absent for `malformed`; for `undeliverable`, the result's aggregation (its `name`). */
  aggregation?: string;
  /** Retries made before giving up: 0 unless a transient failure outlasted them (`undeliverable`). */
  retry_count: number;
  /** When the record was dead-lettered (wall clock, ISO-8601). */
  timestamp: string;
  processor_instance: string;
  /**
   * Where the record came from. For `undeliverable`: where the input stood when the
   * result fired (the partition and offset of the last record of that batch), or -1
   * and "" when a wall-clock tick or the end of the input fired it.
   */
  partition: number;
  offset: string;
  /** `undeliverable` only: the result sink that did not take it, as `sinks[i]` (config order). */
  sink?: string;
}

/** `name:key:start_end`: where a window's state is stored. */
export function stateKey(name: string, key: string, start: number, end: number): string {
  return `${name}:${key}:${start}_${end}`;
}
