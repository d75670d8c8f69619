// The metric names Weir exports: the specification both the deploy test and the
// metrics test check against (src/metrics/prometheus.ts has its own list, compared with this one).

/** Every metric family Weir exports on /metrics, by its Prometheus name. */
export const WEIR_METRICS = [
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

export type WeirMetricName = (typeof WEIR_METRICS)[number];

/** The histograms among `WEIR_METRICS`: they expose `_bucket`, `_sum` and `_count` series. */
export const WEIR_HISTOGRAMS: readonly WeirMetricName[] = [
  'processing_latency_seconds',
  'checkpoint_duration_seconds',
  'checkpoint_pause_seconds',
  'result_latency_seconds',
  'state_restore_seconds',
];

/** Whether `series` is a name that Weir's /metrics can expose (a histogram's series included). */
export function isWeirSeriesName(series: string): boolean {
  if ((WEIR_METRICS as readonly string[]).includes(series)) return true;
  return WEIR_HISTOGRAMS.some((h) => ['_bucket', '_sum', '_count'].some((suffix) => series === h + suffix));
}
