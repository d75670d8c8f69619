// The instrumentation bus: the pipeline says what happened, as typed events;
// metrics (and anything else: logs, tests) subscribe. Nothing in the pipeline
// calls a metric directly, so it never depends on prom-client (kafkajs's
// `instrumentation/` does the same: https://github.com/tulios/kafkajs/tree/master/src/instrumentation).
//
// Events are emitted per batch, per tick or per checkpoint, never per event: the
// hot path stays free of JS objects per event (DESIGN.md, "The one idea").

/** One `WindowOperator.process`, `tick` or `finish` step, from its `Output`. */
export interface BatchProcessedEvent {
  /** Aggregation names, in config order: `late[a]` belongs to `aggregationNames[a]`. */
  aggregationNames: readonly string[];
  /** Records consumed (blank lines included), as `Output.records`; 0 for tick/finish. */
  records: number;
  /** Wall-clock time the step took, seconds. */
  durationSeconds: number;
  /** Per aggregation: events too late for at least one of their windows (`Output.late`). */
  late: readonly number[];
  /** One entry per dead letter; `aggregation` is absent for malformed records. */
  deadLetters: ReadonlyArray<{ reason: string; aggregation?: string | undefined }>;
  /** Source partition of the batch (0 for files, stdin and the generator). */
  partition: number;
}

/** Windows of one aggregation that fired in one step (each firing of a window counts once). */
export interface WindowFiredEvent {
  aggregation: string;
  count: number;
}

/** Windows of one aggregation holding state right now. */
export interface WindowsOpenEvent {
  aggregation: string;
  open: number;
}

/**
 * Bytes of window state. `'all'` when the state is shared by every partition (the
 * WASM linear memory); a producer reports either per partition or `'all'`, never
 * both, so that a sum over partitions is the total.
 */
export interface StateSizeEvent {
  partition: number | 'all';
  bytes: number;
}

/**
 * A watermark observed at wall-clock `nowMs`. `'all'` is the source's combined W.
 * `watermarkMs` is -Infinity before any event and +Infinity once a bounded input ended.
 */
export interface WatermarkEvent {
  partition: number | 'all';
  watermarkMs: number;
  nowMs: number;
  /** A partition's max event time, epoch ms (-Infinity before its first event); absent for `'all'`. */
  maxEventTimeMs?: number;
  /** A partition silent for idleTimeoutMs (it does not hold W back); absent for `'all'`. */
  idle?: boolean;
  /** Wall-clock ms since which the partition is idle; absent while it is active. */
  idleSinceMs?: number;
}

/** Messages between the committed/consumed offset and the partition's high watermark. */
export interface ConsumerLagEvent {
  partition: number;
  lag: number;
  /** Offset of the last record processed from the partition. */
  offset?: string;
}

/** A checkpoint became durable (its metadata.json renamed into place). */
export interface CheckpointCompletedEvent {
  id: number;
  /** From the barrier to the commit point and the offsets, seconds. */
  durationSeconds: number;
  /** The barrier alone: the pause in processing, seconds. */
  syncSeconds: number;
  bytes: number;
}

/**
 * An error that was handled or ended the run.
 * `transient`: retried (broker unavailable, timeouts); `permanent`: one record or
 * request can never succeed (a dead letter); `critical`: the processor stops.
 */
export interface ErrorEvent {
  kind: 'transient' | 'permanent' | 'critical';
}

/** A partition was revoked (rebalance): its per-partition series go away. */
export interface PartitionRevokedEvent {
  partition: number;
}

/** Records waiting in or being written from one sink's queue (`sinks[i]`, `deadLetter`). */
export interface SinkQueueEvent {
  sink: string;
  records: number;
  bytes: number;
}

/** A sink's writes fail transiently and are being retried (`up: false`), or one went through again. */
export interface SinkUpEvent {
  sink: string;
  up: boolean;
}

/**
 * On-time results handed to the sinks: per result, wall time then minus (window end +
 * maxOutOfOrderness), seconds: how long after its window could close a result left.
 */
export interface ResultsHandedEvent {
  latenciesSeconds: readonly number[];
}

/** A newly assigned partition's state was restored (with a changelog): how long it took and the changelog records read. */
export interface StateRestoredEvent {
  partition: number;
  seconds: number;
  records: number;
}

/** Every event of the bus, by name. */
export interface InstrumentationEvents {
  'batch.processed': BatchProcessedEvent;
  'window.fired': WindowFiredEvent;
  'windows.open': WindowsOpenEvent;
  'state.size': StateSizeEvent;
  watermark: WatermarkEvent;
  'consumer.lag': ConsumerLagEvent;
  'checkpoint.completed': CheckpointCompletedEvent;
  'state.restored': StateRestoredEvent;
  error: ErrorEvent;
  'partition.revoked': PartitionRevokedEvent;
  'sink.queue': SinkQueueEvent;
  'sink.up': SinkUpEvent;
  'results.handed': ResultsHandedEvent;
}

export type InstrumentationEventName = keyof InstrumentationEvents;
export type InstrumentationListener<E extends InstrumentationEventName> = (payload: InstrumentationEvents[E]) => void;

type ListenerTable = { [E in InstrumentationEventName]?: ReadonlyArray<InstrumentationListener<E>> };

/**
 * A synchronous, typed event bus. Listeners run in subscription order inside
 * `emit`; an exception in a listener propagates to the emitter (a broken metric is
 * a bug to see, not to hide).
 *
 * Cost: `emit` with no listener is one property read. Producers that would have
 * to build a payload (loops, allocations) check {@link listening} first.
 */
export class Instrumentation {
  // Arrays are replaced, never mutated, so a listener may subscribe or
  // unsubscribe during an emit without affecting that emit.
  private readonly table: ListenerTable = {};

  /** Subscribes `listener` to `event`; returns the function that unsubscribes it. */
  on<E extends InstrumentationEventName>(event: E, listener: InstrumentationListener<E>): () => void {
    const current = (this.table[event] ?? []);
    (this.table as Record<E, ReadonlyArray<InstrumentationListener<E>>>)[event] = [...current, listener];
    return () => this.off(event, listener);
  }

  /** Removes one subscription of `listener` to `event` (no-op if absent). */
  off<E extends InstrumentationEventName>(event: E, listener: InstrumentationListener<E>): void {
    const current = this.table[event];
    if (current === undefined) return;
    const i = current.indexOf(listener);
    if (i < 0) return;
    const next = current.filter((_, j) => j !== i);
    if (next.length === 0) delete this.table[event];
    else (this.table as Record<E, ReadonlyArray<InstrumentationListener<E>>>)[event] = next;
  }

  /** Whether `event` has at least one listener. */
  listening(event: InstrumentationEventName): boolean {
    return this.table[event] !== undefined;
  }

  /** Calls every listener of `event` with `payload`, synchronously. */
  emit<E extends InstrumentationEventName>(event: E, payload: InstrumentationEvents[E]): void {
    const listeners = this.table[event];
    if (listeners === undefined) return;
    for (const l of listeners) l(payload);
  }
}
