// Metrics: the instrumentation bus, the Prometheus registry fed by it, the HTTP
// server, and the two helpers that turn one operator step into bus events.
import { resultParts, type Output, type WindowOperator } from '../pipeline/operator';
import type { Instrumentation } from './events';

export * from './events';
export * from './prometheus';
export * from './server';
export * from './status';

/**
 * Emits what one operator step (`process`, `tick` or `finish`) produced:
 * `batch.processed` once, and `window.fired` once per aggregation that fired.
 * `names[a]` is the name of aggregation `a` (config order, as `out.late`).
 * Builds no payload for an event nobody listens to.
 */
export function instrumentOutput(bus: Instrumentation, out: Output, names: readonly string[], partition: number, durationSeconds: number): void {
  if (bus.listening('batch.processed')) {
    bus.emit('batch.processed', { aggregationNames: names, records: out.records, durationSeconds, late: out.late, deadLetters: out.deadLetters, partition });
  }
  const parts = resultParts(out);
  if (bus.listening('window.fired') && parts.some((r) => r.n > 0)) {
    const counts = new Array<number>(names.length).fill(0);
    for (const r of parts) if (r.n > 0) r.countsByAggregation(names.length).forEach((c, a) => (counts[a]! += c));
    counts.forEach((count, a) => {
      if (count > 0) bus.emit('window.fired', { aggregation: names[a]!, count });
    });
  }
}

/** What {@link instrumentOperator} reads of the operator. */
export type ObservedOperator = Pick<WindowOperator, 'openWindows' | 'memoryBytes' | 'watermarks'>;

/**
 * Emits the operator's gauges at wall-clock `nowMs`: `windows.open` per
 * aggregation, `state.size` (the WASM memory, shared by every partition:
 * partition `'all'`), and `watermark` for the combined W and for each partition
 * (its max event time minus the out-of-orderness bound). A few calls into WASM:
 * call it per batch or on a timer, not per event.
 */
export function instrumentOperator(bus: Instrumentation, op: ObservedOperator, names: readonly string[], nowMs: number): void {
  if (bus.listening('windows.open')) names.forEach((aggregation, a) => bus.emit('windows.open', { aggregation, open: op.openWindows(a) }));
  if (bus.listening('state.size')) bus.emit('state.size', { partition: 'all', bytes: op.memoryBytes() });
  if (bus.listening('watermark')) {
    const w = op.watermarks;
    bus.emit('watermark', { partition: 'all', watermarkMs: w.current, nowMs });
    // After a bounded input ended (W = +inf) nothing is pending on any partition either.
    const ended = w.current === Infinity;
    for (const p of w.status(nowMs)) {
      bus.emit('watermark', {
        partition: p.partition,
        watermarkMs: ended ? Infinity : p.watermarkMs,
        nowMs,
        maxEventTimeMs: p.maxEventTimeMs,
        idle: p.idle,
        ...(p.idleSinceMs === undefined ? {} : { idleSinceMs: p.idleSinceMs }),
      });
    }
  }
}
