// The operator stage: pulls messages from the source (batches, ticks, the end), runs
// them through the window operator, hands what it produced to the delivery stage, and
// takes checkpoint barriers between two batches. It waits for nothing but the source,
// unless a sink's queue is full (back pressure, inside Delivery.deliver).
//
// Rebalance work (checkpointing revoked partitions, restoring assigned ones) comes from
// the source's assignment hook as control work, run between two batches, never while
// one is being processed.
import { performance } from 'node:perf_hooks';
import { WeirError } from './errors/errors';
import type { CheckpointScheduler } from './checkpoint/scheduler';
import type { Checkpointer } from './checkpoint/coordinator';
import type { Instrumentation } from './metrics/events';
import { instrumentOperator, instrumentOutput } from './metrics';
import { resultParts, type Output } from './pipeline/operator';
import type { PartitionedOperator } from './pipeline/partitioned';
import { offsetOf, type RecordBatch, type StreamMessage } from './pipeline/types';
import { NO_POSITION, type Delivery, type InputPosition } from './sinks/delivery';
import { progressEnd, progressLine } from './progress';

/** Results per step when the end of the input fires the open windows. */
const FINISH_STEP_RESULTS = 4096;

/** What the loop counts; the runner's summary. */
export interface LoopCounts {
  records: number;
  results: number;
  lateEvents: number;
  /** True when the loop was stopped before its source ended: open windows did not fire. */
  stopped: boolean;
}

export interface LoopOptions {
  op: PartitionedOperator;
  names: readonly string[];
  messages: AsyncIterator<StreamMessage>;
  delivery: Delivery;
  bus: Instrumentation;
  clock: () => number;
  maxOutOfOrdernessMs: number;
  /** Kafka only: offsets and checkpoints. */
  checkpointer?: Checkpointer | undefined;
  scheduler?: CheckpointScheduler | undefined;
  signal?: AbortSignal | undefined;
  /** Progress line on stderr. */
  progress: boolean;
  /** Readiness (for /readyz): false while control work runs. */
  setReady: (ready: boolean) => void;
  /** Sees each batch before the operator (the run's diagnostics). */
  observe?: (batch: RecordBatch) => void;
}

/** Work the source's assignment hook hands to the loop. */
interface ControlWork {
  run: () => Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class OperatorLoop {
  readonly counts: LoopCounts = { records: 0, results: 0, lateEvents: 0, stopped: false };
  private readonly control: ControlWork[] = [];
  private wakeLoop: (() => void) | undefined;
  private lastReport = 0;
  private lastRecords = 0;

  constructor(private readonly o: LoopOptions) {}

  /** Queues `run` to happen between two batches; resolves once it ran. */
  inLoop(run: () => Promise<void>): Promise<void> {
    return new Promise((resolve, reject) => {
      this.control.push({ run, resolve, reject });
      this.wakeLoop?.();
    });
  }

  /** Control work still queued when the run stops is refused, so that nothing waits on it. */
  refusePending(): void {
    for (const c of this.control.splice(0)) c.reject(new WeirError('the run stopped', { domain: 'internal' }));
  }

  /** Runs to the end of the source, a stop, or a failure. */
  async run(): Promise<void> {
    const { op, messages, delivery, checkpointer, scheduler, signal } = this.o;
    const WAKE = Symbol('wake');
    // A stop or a failed sink wakes the loop. The loop never races a promise that lives
    // as long as the run: each race would leave a reaction on it holding that race's
    // result (a whole batch), so every batch read would stay reachable until the end.
    const onAbort = (): void => this.wakeLoop?.();
    signal?.addEventListener('abort', onAbort, { once: true });
    const offFailure = delivery.onFailure(() => this.wakeLoop?.());
    let pending: Promise<IteratorResult<StreamMessage>> | undefined;
    this.lastReport = Date.now();
    try {
      this.o.setReady(true);
      // While the source has batches ready, each pull resolves as a microtask and the
      // loop would never let I/O callbacks run: the sinks' writes and a checkpoint's
      // steps would wait until the source runs dry. Give them a turn every millisecond.
      let lastYield = performance.now();
      const giveTurn = async (): Promise<void> => {
        if (performance.now() - lastYield < 1) return;
        await new Promise<void>((resolve) => setImmediate(resolve));
        lastYield = performance.now();
      };
      for (;;) {
        await giveTurn();
        await this.runControl();
        scheduler?.maybe();
        if (signal?.aborted === true) {
          this.counts.stopped = true;
          break;
        }
        if (pending === undefined) {
          pending = messages.next();
          // A pull left behind by a stop may still fail; it is no longer anyone's concern.
          pending.catch(() => undefined);
        }
        const wake = new Promise<typeof WAKE>((resolve) => (this.wakeLoop = () => resolve(WAKE)));
        if (this.control.length > 0) this.wakeLoop?.();
        const next = await Promise.race([pending, wake]);
        this.wakeLoop = undefined;
        // A sink that failed ends the run even while the source is quiet.
        delivery.check();
        if (next === WAKE) continue;
        pending = undefined;
        if (next.done === true) break;
        const m = next.value;
        if (m.kind === 'end') break;
        if (m.kind === 'tick') {
          await this.hand(this.step(-1, () => op.tick(m.nowMs)), NO_POSITION);
          continue;
        }
        const batch = checkpointer?.unseen(m.batch) ?? m.batch;
        if (batch.n === 0) continue;
        const last = offsetOf(batch, batch.n - 1);
        this.o.observe?.(batch);
        await this.hand(this.step(batch.partition, () => op.process(batch)), { partition: batch.partition, offset: String(last) });
        checkpointer?.processed(batch);
        if (batch.highWatermark !== undefined) {
          this.o.bus.emit('consumer.lag', { partition: batch.partition, lag: Math.max(0, Number(batch.highWatermark) - last - 1), offset: String(last) });
        }
        if (this.o.progress) this.report();
      }
      // Only the end of the input fires the open windows; after a stop, the next run
      // goes on with them from the checkpoint taken now. In steps of a batch's worth of
      // results, the sinks writing meanwhile.
      if (!this.counts.stopped) {
        for (let done = false; !done; ) {
          await giveTurn();
          const out = this.step(0, () => {
            const s = op.finishStep(FINISH_STEP_RESULTS);
            done = s.done;
            return s.out;
          });
          await this.hand(out, NO_POSITION, false);
        }
      }
    } finally {
      this.o.setReady(false);
      signal?.removeEventListener('abort', onAbort);
      offFailure();
      if (this.o.progress) process.stderr.write(progressEnd());
    }
  }

  private async runControl(): Promise<void> {
    while (this.control.length > 0) {
      const c = this.control.shift()!;
      // Not ready while partitions are being restored (or checkpointed on a rebalance).
      this.o.setReady(false);
      try {
        await c.run();
        c.resolve();
      } catch (e) {
        c.reject(e);
        throw e;
      }
      this.o.setReady(true);
    }
  }

  /** One operator step, timed and reported. */
  private step(partition: number, run: () => Output): Output {
    const { bus, op, names, clock } = this.o;
    const t0 = performance.now();
    const out = run();
    instrumentOutput(bus, out, names, partition, (performance.now() - t0) / 1000);
    instrumentOperator(bus, op, names, clock());
    return out;
  }

  /**
   * Hands one step's output to the sinks' queues (waits only while one is full).
   * `live`: its results count in result_latency_seconds (not those the end of a
   * bounded input fires, which waited for the end, not for W).
   */
  private async hand(out: Output, at: InputPosition, live = true): Promise<void> {
    const c = this.counts;
    c.records += out.records;
    // One batch per partition that fired, as they came (joined they would be copied).
    const parts = resultParts(out);
    let n = 0;
    for (const r of parts) n += r.n;
    c.results += n;
    for (const l of out.late) c.lateEvents += l;
    if (live && n > 0 && this.o.bus.listening('results.handed')) {
      const now = this.o.clock(), ooo = this.o.maxOutOfOrdernessMs;
      const latenciesSeconds: number[] = [];
      for (const r of parts) for (let i = 0; i < r.n; i++) if (!r.isLate(i)) latenciesSeconds.push((now - (r.endOf(i) + ooo)) / 1000);
      this.o.bus.emit('results.handed', { latenciesSeconds });
    }
    if (n === 0 && out.deadLetters.length === 0) return;
    await this.o.delivery.deliver(parts, out.deadLetters, at);
    for (const r of parts) r.release(); // the sinks' queues hold them now
  }

  private report(): void {
    const now = Date.now();
    if (now - this.lastReport < 1000) return;
    const { op } = this.o;
    const rate = ((this.counts.records - this.lastRecords) * 1000) / (now - this.lastReport);
    let open = 0;
    this.o.names.forEach((_, a) => (open += op.openWindows(a)));
    process.stderr.write(progressLine({ records: this.counts.records, eventsPerSecond: rate, watermarkMs: op.watermarks.current, openWindows: open }));
    this.lastReport = now;
    this.lastRecords = this.counts.records;
  }
}
