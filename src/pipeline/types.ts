// The shapes that cross the pipeline: records in, results and dead letters out.

/** Raw records of one source partition: record i is buf[starts[i], ends[i]). */
export interface RecordBatch {
  buf: Buffer;
  starts: Uint32Array;
  ends: Uint32Array;
  n: number;
  partition: number;
  /** Offset of record i: `offsets[i]` when given (Kafka), else firstOffset + i (line index of a file). */
  firstOffset: number;
  offsets?: string[];
  /** Kafka: the partition's high watermark when fetched (the offset its next record will get), for consumer lag. */
  highWatermark?: string;
}

/** Control travels with the data as one tagged union. */
export type StreamMessage =
  | { kind: 'batch'; batch: RecordBatch }
  /** Wall-clock tick: lets idle partitions stop holding the watermark back. */
  | { kind: 'tick'; nowMs: number }
  | { kind: 'end' };

/** One firing of one window (SEMANTICS.md, Results). Field order is the output order. */
export interface WindowResult {
  name: string;
  key: string;
  group: Record<string, string>;
  window: { start: number; end: number };
  results: { count: number; sum: number; avg: number; min: number; max: number; p50: number; p95: number; p99: number; stddev: number };
  late: boolean;
  emittedAt: number;
}

export type DeadLetterReason = 'malformed' | 'invalid' | 'late';

/** SEMANTICS.md, Dead-letter records. */
export interface DeadLetter {
  original_event: string;
  reason: DeadLetterReason;
  error: string;
  aggregation?: string;
  retry_count: number;
  timestamp: string;
  processor_instance: string;
  partition: number;
  offset: string;
}

/** `name:key:start_end`: where a window's state is stored. */
export function stateKey(name: string, key: string, start: number, end: number): string {
  return `${name}:${key}:${start}_${end}`;
}
