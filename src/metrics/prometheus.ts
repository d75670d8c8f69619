// Weir's Prometheus metrics: seventeen families fed by the instrumentation bus, plus
// Node's default process metrics, in a registry of their own (never prom-client's
// global one, so that two processors in one process or test do not collide).
//
// Labels stay bounded: aggregation names (from the config), partitions (from the
// topic) and error kinds (three). Never a group-by key or value: those are
// unbounded, and every label value is a series Prometheus keeps in memory.
import * as prom from 'prom-client';
import type { Instrumentation } from './events';

/** The metric families, unprefixed, as deploy/ (alerts, dashboard) and test/deploy.test.ts name them. */
export const METRIC_NAMES = [
  'events_processed_total',
  'processing_latency_seconds',
  'kafka_consumer_lag',
  'window_count',
  'state_size_bytes',
  'checkpoint_duration_seconds',
  'errors_total',
  'late_events_total',
  'watermark_lag_seconds',
  'checkpoint_pause_seconds',
  'result_latency_seconds',
  'sink_queue_records',
  'sink_up',
  'partition_idle',
  'records_consumed_total',
  'state_restore_seconds',
  'state_restored_records_total',
] as const;

/** Error kinds of `errors_total`; every one is exported from the start, at 0. */
export const ERROR_KINDS = ['transient', 'permanent', 'critical'] as const;

/**
 * Per-batch processing time, seconds: 0.1 ms (a small batch in the WASM core)
 * to 2 s (a 64k batch stalled by GC or a slow sink). The 1 s bucket bound is the
 * WeirProcessingLatencyP99High alert threshold, so the alert is exact there.
 */
export const LATENCY_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2];

/** Checkpoint duration, seconds: 5 ms (small memory state) to 2 min (large RocksDB state). */
export const CHECKPOINT_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The checkpoint barrier's pause in processing, seconds: 0.1 ms to 1 s. */
export const PAUSE_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** Result latency, seconds: 1 ms to 1 min. The 0.05 and 0.25 s bounds are the targets a live stream is held to. */
export const RESULT_LATENCY_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface MetricsOptions {
  /** Prepended to every metric name, Node's default metrics included. @default "" */
  prefix?: string;
  /**
   * Aggregation names known up front: their per-aggregation series start at 0, so
   * `rate()` and `increase()` see the first events instead of a series appearing
   * mid-flight. @default []
   */
  aggregations?: readonly string[];
  /** Also register Node's default process metrics (CPU, memory, event loop lag, GC). @default true */
  defaultMetrics?: boolean;
}

export interface Metrics {
  registry: prom.Registry;
  /** Unsubscribes from the bus (the registry keeps its last values). */
  dispose(): void;
}

/**
 * Registers the Weir metrics (and Node's default metrics) in a new registry
 * and subscribes them to `bus`:
 *
 * | metric | type | labels | fed by |
 * | --- | --- | --- | --- |
 * | `events_processed_total` | counter | aggregation | `batch.processed`: `records` added for every aggregation (each aggregation reads every record, blank, malformed, invalid and late ones included) |
 * | `processing_latency_seconds` | histogram | - | `batch.processed`: `durationSeconds`, one observation per batch |
 * | `kafka_consumer_lag` | gauge | partition | `consumer.lag` |
 * | `window_count` | gauge | aggregation | `windows.open`: windows holding state |
 * | `state_size_bytes` | gauge | partition | `state.size` (partition `all` for shared state) |
 * | `checkpoint_duration_seconds` | histogram | - | `checkpoint.completed` |
 * | `errors_total` | counter | kind | `error`, and dead letters (below) |
 * | `late_events_total` | counter | aggregation | `batch.processed`: `late[a]` |
 * | `checkpoint_pause_seconds` | histogram | - | `checkpoint.completed`: `syncSeconds`, the barrier's pause in processing |
 * | `result_latency_seconds` | histogram | - | `results.handed`: wall time a result is handed to the sinks minus (window end + maxOutOfOrderness), on-time results |
 * | `sink_queue_records` | gauge | sink | `sink.queue`: records queued or being written, per sink (`sinks[i]`, `deadLetter`) |
 * | `sink_up` | gauge | sink | `sink.up`: 0 while a sink's writes fail and are retried, 1 once one goes through |
 * | `watermark_lag_seconds` | gauge | partition | `watermark`: (nowMs - watermarkMs) / 1000; no sample while the partition (or the source, `all`) has no watermark yet, 0 once a bounded input ended |
 * | `partition_idle` | gauge | partition | `watermark`: 1 while the partition is idle (silent for idleTimeoutMs: it does not hold W back), else 0 |
 * | `records_consumed_total` | counter | - | `batch.processed`: `records`, once per record whatever the number of aggregations (the source's input rate) |
 * | `state_restore_seconds` | histogram | - | `state.restored`: time to restore a newly assigned partition (local cache and changelog) |
 * | `state_restored_records_total` | counter | - | `state.restored`: changelog records read by restores |
 *
 * Dead letters: a `malformed` or `invalid` dead letter is an error that retrying
 * can never fix, so each one also counts as `errors_total{kind="permanent"}`
 * (malformed once per record, invalid once per aggregation that rejected it, as
 * the dead-letter queue records them). `late` dead letters are not errors: they
 * are counted by `late_events_total` only, together with the events that were
 * too late for some but not all of their windows.
 *
 * Per-partition gauges of a partition are removed on `partition.revoked`.
 */
export function createMetrics(bus: Instrumentation, opts: MetricsOptions = {}): Metrics {
  const prefix = opts.prefix ?? '';
  const registry = new prom.Registry();
  if (opts.defaultMetrics ?? true) prom.collectDefaultMetrics({ register: registry, prefix });
  const registers = [registry];

  const eventsProcessed = new prom.Counter({
    name: `${prefix}events_processed_total`,
    help: 'Records read, per aggregation (each aggregation reads every record; dead-lettered and late ones included).',
    labelNames: ['aggregation'] as const,
    registers,
  });
  const latency = new prom.Histogram({
    name: `${prefix}processing_latency_seconds`,
    help: 'Wall-clock time to process one batch through the window operator, seconds.',
    buckets: LATENCY_BUCKETS_SECONDS,
    registers,
  });
  const consumerLag = new prom.Gauge({
    name: `${prefix}kafka_consumer_lag`,
    help: 'Messages between the consumed offset and the high watermark, per Kafka partition.',
    labelNames: ['partition'] as const,
    registers,
  });
  const windowCount = new prom.Gauge({
    name: `${prefix}window_count`,
    help: 'Open windows (holding state), per aggregation.',
    labelNames: ['aggregation'] as const,
    registers,
  });
  const stateSize = new prom.Gauge({
    name: `${prefix}state_size_bytes`,
    help: 'Bytes of window state, per partition ("all" when shared by every partition).',
    labelNames: ['partition'] as const,
    registers,
  });
  const restoreSeconds = new prom.Histogram({
    name: `${prefix}state_restore_seconds`,
    help: 'Time to restore a newly assigned partition from its local cache and changelog, seconds.',
    buckets: CHECKPOINT_BUCKETS_SECONDS,
    registers,
  });
  const restoredRecords = new prom.Counter({
    name: `${prefix}state_restored_records_total`,
    help: 'Changelog records read to restore assigned partitions.',
    registers,
  });
  const checkpointDuration = new prom.Histogram({
    name: `${prefix}checkpoint_duration_seconds`,
    help: 'Time from checkpoint barrier to durable metadata, seconds.',
    buckets: CHECKPOINT_BUCKETS_SECONDS,
    registers,
  });
  const errors = new prom.Counter({
    name: `${prefix}errors_total`,
    help: 'Errors by kind: transient (retried), permanent (dead letters: malformed or invalid records), critical (the processor stops).',
    labelNames: ['kind'] as const,
    registers,
  });
  const lateEvents = new prom.Counter({
    name: `${prefix}late_events_total`,
    help: 'Events too late for at least one of their windows, per aggregation.',
    labelNames: ['aggregation'] as const,
    registers,
  });
  const watermarkLag = new prom.Gauge({
    name: `${prefix}watermark_lag_seconds`,
    help: 'Wall clock minus event-time watermark, seconds, per partition ("all": the combined watermark); no sample before the first watermark, 0 once a bounded input ended.',
    labelNames: ['partition'] as const,
    registers,
  });

  const checkpointPause = new prom.Histogram({
    name: `${prefix}checkpoint_pause_seconds`,
    help: 'Time processing waits for a checkpoint barrier (the copy of the changed windows), seconds.',
    buckets: PAUSE_BUCKETS_SECONDS,
    registers,
  });
  const resultLatency = new prom.Histogram({
    name: `${prefix}result_latency_seconds`,
    help: 'Wall time an on-time result was handed to the sinks minus (its window end + maxOutOfOrderness), seconds.',
    buckets: RESULT_LATENCY_BUCKETS_SECONDS,
    registers,
  });
  const sinkQueue = new prom.Gauge({
    name: `${prefix}sink_queue_records`,
    help: 'Records queued for or being written to a sink; the loop waits when a queue is full.',
    labelNames: ['sink'] as const,
    registers,
  });
  const sinkUp = new prom.Gauge({
    name: `${prefix}sink_up`,
    help: '0 while a sink\'s writes fail transiently and are being retried, 1 otherwise.',
    labelNames: ['sink'] as const,
    registers,
  });

  for (const kind of ERROR_KINDS) errors.inc({ kind }, 0);
  for (const aggregation of opts.aggregations ?? []) {
    eventsProcessed.inc({ aggregation }, 0);
    lateEvents.inc({ aggregation }, 0);
    windowCount.set({ aggregation }, 0);
  }
  const partitionIdle = new prom.Gauge({
    name: `${prefix}partition_idle`,
    help: 'Whether a source partition is idle (1: silent for idleTimeoutMs, it does not hold the watermark back), per partition.',
    labelNames: ['partition'] as const,
    registers,
  });
  const recordsConsumed = new prom.Counter({
    name: `${prefix}records_consumed_total`,
    help: 'Records read from the source (each counted once, whatever the number of aggregations).',
    registers,
  });
  recordsConsumed.inc(0);

  const subscriptions = [
    bus.on('batch.processed', (e) => {
      latency.observe(e.durationSeconds);
      if (e.records > 0) recordsConsumed.inc(e.records);
      e.aggregationNames.forEach((aggregation, a) => {
        if (e.records > 0) eventsProcessed.inc({ aggregation }, e.records);
        const late = e.late[a] ?? 0;
        if (late > 0) lateEvents.inc({ aggregation }, late);
      });
      let permanent = 0;
      for (const d of e.deadLetters) if (d.reason === 'malformed' || d.reason === 'invalid') permanent++;
      if (permanent > 0) errors.inc({ kind: 'permanent' }, permanent);
    }),
    bus.on('windows.open', (e) => windowCount.set({ aggregation: e.aggregation }, e.open)),
    bus.on('state.size', (e) => stateSize.set({ partition: String(e.partition) }, e.bytes)),
    bus.on('watermark', (e) => {
      const partition = String(e.partition);
      // No watermark yet is no sample, not 0 (which would read "fully caught up"): an
      // absent series is what Prometheus queries and alerts (absent(), or no value) expect.
      if (e.watermarkMs === -Infinity) watermarkLag.remove({ partition });
      else watermarkLag.set({ partition }, e.watermarkMs === Infinity ? 0 : (e.nowMs - e.watermarkMs) / 1000);
      if (e.idle !== undefined) partitionIdle.set({ partition }, e.idle ? 1 : 0);
    }),
    bus.on('consumer.lag', (e) => consumerLag.set({ partition: String(e.partition) }, e.lag)),
    bus.on('state.restored', (e) => {
      restoreSeconds.observe(e.seconds);
      restoredRecords.inc(e.records);
    }),
    bus.on('checkpoint.completed', (e) => {
      checkpointDuration.observe(e.durationSeconds);
      checkpointPause.observe(e.syncSeconds);
    }),
    bus.on('results.handed', (e) => {
      for (const s of e.latenciesSeconds) resultLatency.observe(s);
    }),
    bus.on('sink.queue', (e) => sinkQueue.set({ sink: e.sink }, e.records)),
    bus.on('sink.up', (e) => sinkUp.set({ sink: e.sink }, e.up ? 1 : 0)),
    bus.on('error', (e) => errors.inc({ kind: e.kind })),
    bus.on('partition.revoked', (e) => {
      const partition = String(e.partition);
      for (const g of [consumerLag, stateSize, watermarkLag, partitionIdle]) g.remove({ partition });
    }),
  ];

  return {
    registry,
    dispose: () => {
      for (const off of subscriptions) off();
    },
  };
}
