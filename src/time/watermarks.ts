// Per-partition watermarks combined into the source's W (docs/semantics.md):
// W = min over partitions of (max event time - maxOutOfOrderness), where a
// partition silent for idleTimeoutMs stops holding W back until it sends again.
// Like Flink's WatermarkOutputMultiplexer, the combined W never moves backwards.
//
// Flink stops there: when every input is idle, W stalls (WatermarkStrategy.withIdleness)
// and the last windows of a quiet live stream never fire. With `idleAdvance`, W then
// follows the wall clock instead: max(W, now - maxOutOfOrderness), for as long as every
// partition stays idle.
import type { Config } from '../config';

interface PartitionState {
  /** Max valid event time seen, -Infinity before the first. */
  max: number;
  /** Wall-clock ms of the last record (or of assignment). */
  lastSeenMs: number;
}

/** One partition as {@link Watermarks.status} sees it at a wall-clock instant. */
export interface PartitionWatermark {
  partition: number;
  /** Max valid event time seen, epoch ms; -Infinity before the first event. */
  maxEventTimeMs: number;
  /** The partition's own watermark (max - maxOutOfOrderness); -Infinity before the first event. */
  watermarkMs: number;
  /** Silent for idleTimeoutMs or longer: it does not hold W back. */
  idle: boolean;
  /** Wall-clock ms since which it is idle (last record + idleTimeoutMs); undefined while active. */
  idleSinceMs: number | undefined;
}

export interface WatermarksOptions {
  /** When every partition is idle, W = max(W, now - ooo). @default false */
  idleAdvance?: boolean;
}

export class Watermarks {
  private readonly parts = new Map<number, PartitionState>();
  /** The source's W: monotonic. */
  current = -Infinity;
  readonly idleAdvance: boolean;

  constructor(
    readonly ooo: number,
    readonly idleTimeoutMs: number,
    opts: WatermarksOptions = {},
  ) {
    this.idleAdvance = opts.idleAdvance ?? false;
  }

  /** A partition that will send (Kafka assignment): it holds W back until it sends or idles. */
  register(p: number, nowMs: number, max = -Infinity): void {
    if (!this.parts.has(p)) this.parts.set(p, { max, lastSeenMs: nowMs });
  }

  /** Forget a partition (revoked): it no longer holds W back. */
  unregister(p: number): void {
    this.parts.delete(p);
  }

  maxOf(p: number): number {
    return this.parts.get(p)?.max ?? -Infinity;
  }

  private active(s: PartitionState, nowMs: number): boolean {
    return nowMs - s.lastSeenMs < this.idleTimeoutMs;
  }

  /** min of (max - ooo) over the other active partitions; +Infinity if none. */
  othersMin(p: number, nowMs: number): number {
    let m = Infinity;
    for (const [q, s] of this.parts) if (q !== p && this.active(s, nowMs)) m = Math.min(m, s.max - this.ooo);
    return m;
  }

  /** Partition p sent records up to event time `max`. */
  update(p: number, max: number, nowMs: number): number {
    const s = this.parts.get(p);
    if (s === undefined) this.parts.set(p, { max, lastSeenMs: nowMs });
    else {
      s.max = Math.max(s.max, max);
      s.lastSeenMs = nowMs;
    }
    return this.refresh(nowMs);
  }

  /** Recomputes W at wall-clock `nowMs` (idleness may have changed). */
  refresh(nowMs: number): number {
    let m = Infinity, any = false;
    for (const s of this.parts.values()) {
      if (!this.active(s, nowMs)) continue;
      any = true;
      m = Math.min(m, s.max - this.ooo);
    }
    // No partition at all (none assigned yet) is not "every partition idle": nothing was read.
    if (!any && this.idleAdvance && this.parts.size > 0) m = nowMs - this.ooo;
    else if (!any) return this.current;
    if (m > this.current) this.current = m;
    return this.current;
  }

  /** Whether every partition (at least one) is idle at `nowMs`: W then follows the wall clock when idleAdvance is on. */
  allIdle(nowMs: number): boolean {
    if (this.parts.size === 0) return false;
    for (const s of this.parts.values()) if (this.active(s, nowMs)) return false;
    return true;
  }

  /**
   * Forgets W: the next refresh() or update() computes it from the partitions' maxima
   * again (after a rebalance: see PartitionedOperator.rebase()). Monotonic from there.
   */
  restart(): void {
    this.current = -Infinity;
  }

  /** End of a bounded input. */
  finish(): void {
    this.current = Infinity;
  }

  /** Per partition: max event time (for checkpoints and metrics). */
  snapshot(): Array<{ partition: number; maxEventTimeMs: number }> {
    return [...this.parts].map(([partition, s]) => ({ partition, maxEventTimeMs: s.max }));
  }

  /** Per partition, in partition order: its watermark and idleness at wall-clock `nowMs`. */
  status(nowMs: number): PartitionWatermark[] {
    return [...this.parts]
      .sort(([a], [b]) => a - b)
      .map(([partition, s]) => {
        const idle = !this.active(s, nowMs);
        return { partition, maxEventTimeMs: s.max, watermarkMs: s.max - this.ooo, idle, idleSinceMs: idle ? s.lastSeenMs + this.idleTimeoutMs : undefined };
      });
  }
}

/** The source's Watermarks as the config sets them up (one per source, shared by its partitions' operators). */
export function watermarksFor(cfg: Pick<Config, 'eventTime' | 'source'>): Watermarks {
  const s = cfg.source;
  // A file is read to its end as fast as it goes: it is never idle.
  const idle = s.type === 'file' ? Infinity : s.idleTimeoutMs;
  return new Watermarks(cfg.eventTime.maxOutOfOrdernessMs, idle, { idleAdvance: cfg.eventTime.idleAdvance });
}
