// Per-partition watermarks combined into the source's W (docs/semantics.md):
// W = min over partitions of (max event time - maxOutOfOrderness), where a
// partition silent for idleTimeoutMs stops holding W back until it sends again.
// Like Flink's WatermarkOutputMultiplexer, the combined W never moves backwards.

interface PartitionState {
  /** Max valid event time seen, -Infinity before the first. */
  max: number;
  /** Wall-clock ms of the last record (or of assignment). */
  lastSeenMs: number;
}

export class Watermarks {
  private readonly parts = new Map<number, PartitionState>();
  /** The source's W: monotonic. */
  current = -Infinity;

  constructor(
    readonly ooo: number,
    private readonly idleTimeoutMs: number,
  ) {}

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
    if (any && m > this.current) this.current = m;
    return this.current;
  }

  /** End of a bounded input. */
  finish(): void {
    this.current = Infinity;
  }

  /** Per partition: max event time (for checkpoints and metrics). */
  snapshot(): Array<{ partition: number; maxEventTimeMs: number }> {
    return [...this.parts].map(([partition, s]) => ({ partition, maxEventTimeMs: s.max }));
  }
}
