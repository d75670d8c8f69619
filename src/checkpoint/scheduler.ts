// When checkpoints are taken, and at most one at a time: the loop calls `maybe()`
// between two batches; a due checkpoint takes its barrier there (a synchronous copy)
// and completes in the background while batches go on. A due checkpoint waits while
// the previous one is in flight. A failed completion fails the run: the next call of
// the loop into the scheduler throws it.
import type { CheckpointSource, Checkpointer } from './coordinator';

/** What the scheduler needs of the delivery stage: a barrier position, and waiting for the sinks up to it. */
export interface BarrierSinks {
  readonly barrier: number;
  flushUpTo(seq: number): Promise<void>;
}

export class CheckpointScheduler {
  private inFlight: Promise<void> | undefined;
  private failure: { error: unknown } | undefined;
  private requested = false;

  constructor(
    private readonly ck: Checkpointer,
    private readonly source: CheckpointSource,
    private readonly sinks: BarrierSinks,
  ) {}

  /** Takes a barrier if a checkpoint is due (or requested) and none is in flight. Throws a failed checkpoint's error. */
  maybe(): void {
    this.check();
    if (this.inFlight !== undefined) return;
    if (this.requested) {
      this.requested = false;
      this.start('partitions read');
    } else if (this.ck.due()) this.start('interval');
  }

  /** Asks for a checkpoint at the loop's next turn, whatever the interval. */
  request(): void {
    this.requested = true;
  }

  /** Waits for the checkpoint in flight, if any, then takes one and waits for it (stop, end of input, rebalance). */
  async now(reason: string): Promise<void> {
    await this.idle();
    this.start(reason);
    await this.idle();
  }

  /** Waits until no checkpoint is in flight; throws a failed one's error. */
  async idle(): Promise<void> {
    while (this.inFlight !== undefined) await this.inFlight;
    this.check();
  }

  private start(reason: string): void {
    const seq = this.sinks.barrier;
    const b = this.ck.barrier(reason);
    if (b === undefined) return;
    this.inFlight = this.ck
      .complete(b, this.source, () => this.sinks.flushUpTo(seq))
      .then(
        () => undefined,
        (e: unknown) => void (this.failure ??= { error: e }),
      )
      .finally(() => (this.inFlight = undefined));
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure.error;
  }
}
