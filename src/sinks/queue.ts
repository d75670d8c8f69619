// One sink's queue of writes in flight: the delivery stage between the operator and a
// sink. The operator pushes and goes on; the queue's own worker writes what is queued,
// in order, coalescing everything that queued up during the previous write into one
// write (the first write after the queue was idle waits `lingerMs` to gather more).
// The loop waits only when the queue holds `maxRecords` records or `maxBytes` bytes:
// that is back pressure, and the only wait.
//
// Every push carries a sequence number (the operator step it came from; pushes need not
// come in sequence order: a result sink hands its undeliverable results to the
// dead-letter queue later, with their step's number); `doneThrough(seq)` resolves once
// every push numbered up to `seq` has been handled (written, or handed on as dead
// letters by `handle`): what a checkpoint waits for before its commit point. A `handle`
// that throws makes the queue failed: it stops; a waiter for pushes it had handled
// still resolves, every other one, present and future, gets that error.

export interface QueueLimits {
  /** Records queued or in flight before push() callers wait. */
  maxRecords: number;
  /** Bytes (as the pusher counts them) queued or in flight before push() callers wait. */
  maxBytes: number;
  /** Most records in one write. */
  maxWriteRecords: number;
  /** ms to wait for more records before a write that is not full, when the queue was idle (nothing in flight). */
  lingerMs: number;
}

/** One push: records of one operator step, where the input stood, and their size. */
export interface QueuedWrite<T, A> {
  seq: number;
  /** What was pushed: records, or batches of records (see `count`). */
  records: readonly T[];
  /** Records pushed: records.length, or the records the batches hold. */
  count: number;
  bytes: number;
  at: A;
}

export class SinkQueue<T, A> {
  private readonly queue: Array<QueuedWrite<T, A>> = [];
  /** Pushes taken by the worker and not yet handled. */
  private inFlight: Array<QueuedWrite<T, A>> = [];
  private records = 0;
  private bytes = 0;
  private running = false;
  private failure: Error | undefined;
  private readonly doneWaiters: Array<{ seq: number; resolve: () => void; reject: (e: unknown) => void }> = [];
  private spaceWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];

  constructor(
    readonly name: string,
    private readonly limits: QueueLimits,
    /** Writes the records of `writes` (in order) to the sink, or hands them on; throws when the sink is unusable. */
    private readonly handle: (writes: ReadonlyArray<QueuedWrite<T, A>>) => Promise<void>,
    /** Called after each change of the queued amount (metrics). */
    private readonly onLevel: (records: number, bytes: number) => void = () => {},
  ) {}

  /** Queues `records` (`count` records: more than records.length when they are batches); never waits (see {@link space}). */
  push(seq: number, records: readonly T[], bytes: number, at: A, count = records.length): void {
    if (this.failure !== undefined) throw this.failure;
    if (count === 0) return;
    this.queue.push({ seq, records, count, bytes, at });
    this.records += count;
    this.bytes += bytes;
    this.onLevel(this.records, this.bytes);
    if (!this.running) void this.run();
  }

  /** Whether push() callers should wait. */
  get full(): boolean {
    return this.records >= this.limits.maxRecords || this.bytes >= this.limits.maxBytes;
  }

  /** Resolves once the queue is below its limits; rejects once it failed. */
  space(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (!this.full) return Promise.resolve();
    return new Promise((resolve, reject) => this.spaceWaiters.push({ resolve, reject }));
  }

  /** Resolves once every push with a sequence number <= seq is handled; rejects if the queue failed before. */
  doneThrough(seq: number): Promise<void> {
    if (this.isDone(seq)) return Promise.resolve();
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.doneWaiters.push({ seq, resolve, reject }));
  }

  /** The queue's failure, if it failed. */
  get error(): Error | undefined {
    return this.failure;
  }

  /** No push numbered <= seq is queued or in flight (a scan: queues hold a few pushes, and this runs per write). */
  private isDone(seq: number): boolean {
    for (const w of this.inFlight) if (w.seq <= seq) return false;
    for (const w of this.queue) if (w.seq <= seq) return false;
    return true;
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      // Only the first write after the queue was idle lingers: what queued up during a
      // write has waited for it already, and goes out as soon as it is done.
      let idle = true;
      while (this.queue.length > 0) {
        if (idle && this.limits.lingerMs > 0 && this.records < this.limits.maxWriteRecords) await new Promise((r) => setTimeout(r, this.limits.lingerMs));
        idle = false;
        // Whole pushes, up to maxWriteRecords (at least one push).
        let n = 0, take = 0;
        while (take < this.queue.length && (take === 0 || n + this.queue[take]!.count <= this.limits.maxWriteRecords)) n += this.queue[take++]!.count;
        this.inFlight = this.queue.splice(0, take);
        await this.handle(this.inFlight);
        const done = this.inFlight;
        this.inFlight = [];
        for (const w of done) {
          this.records -= w.count;
          this.bytes -= w.bytes;
        }
        this.onLevel(this.records, this.bytes);
        this.wake();
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.running = false;
    }
  }

  private wake(): void {
    for (let i = 0; i < this.doneWaiters.length; ) {
      const w = this.doneWaiters[i]!;
      if (this.isDone(w.seq)) {
        this.doneWaiters.splice(i, 1);
        w.resolve();
      } else i++;
    }
    if (!this.full && this.spaceWaiters.length > 0) {
      const ws = this.spaceWaiters;
      this.spaceWaiters = [];
      for (const w of ws) w.resolve();
    }
  }

  private fail(e: unknown): void {
    const failure = e instanceof Error ? e : new Error(String(e));
    this.failure = failure;
    e = failure;
    // The failed write's pushes stay in flight: not handled.
    for (const w of this.doneWaiters.splice(0)) w.reject(e);
    for (const w of this.spaceWaiters.splice(0)) w.reject(e);
  }
}
