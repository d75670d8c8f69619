// Delivering what the operator produced: its results to every result sink, its dead
// letters to the dead-letter queue, each through the sink's own queue of writes in
// flight (queue.ts), so that the loop never waits for a sink until that sink's queue
// is full (back pressure). Per sink, writes happen in the order the operator produced
// them, so the last result written for a window is its last firing.
//
// What happens when a write fails; every result and every event ends up delivered,
// counted in a delivered result, dead-lettered with a reason, or the run stops before
// a checkpoint moves past it: nothing is lost silently.
//
// - Transient failure of a result sink (unreachable, timeout, broker unavailable, a
//   database failover: classify() says `transient`): retried on the queue, not in the
//   loop, with a capped exponential backoff (`cfg.retry`: 100, 200, 400 ms, ... up to
//   maxDelayMs) for up to `retry.maxElapsedMs` (minutes by default). Meanwhile the
//   queue fills and holds the loop back, and `sink_up` reads 0. When the time runs out,
//   each result of that write becomes a dead letter, reason `undeliverable`,
//   `retry_count` the retries made, `error` naming the sink and its last error, `sink`
//   = `sinks[i]`; the run goes on. Other sinks still get the results.
// - A sink that refuses the records themselves (RecordsRejectedError: a row its table
//   rejects, a message larger than the topic allows) is not retried: the write is
//   split into one record each, and only the refused ones are dead-lettered
//   (`undeliverable`, `retry_count` 0). A malformed or invalid event is the same kind
//   of failure (permanent) on the input side: the operator dead-letters it, and a
//   warning is logged per step.
// - Any other failure of a result sink (a file that cannot be written, a missing table
//   or permission, a table whose columns cannot hold the results, a bug) means the
//   sink is unusable: dead-lettering every result from then on would quietly move the
//   output into the dead-letter queue, so the run stops.
// - The dead-letter queue is retried the same way, but when it cannot take a write,
//   nothing could record what is lost: the run stops (critical).
// A stop is a FatalError, thrown by the next deliver(), flushUpTo() or drain(). The
// runner then completes no checkpoint past it (the operator's state already holds the
// failed step), closes the source and sinks, and exits non-zero; a restart recovers
// from the last checkpoint and replays from there, writing the results since then
// again (the sinks keep the last result per window).
// Not here: a sink that cannot be opened at start fails the run before anything is
// read (the supervisor's restart is the retry); a Kafka sink's kafkajs retries on its
// own first (KafkaJSNumberOfRetriesExceeded of a retriable cause is transient, see
// sinks/kafka.ts), so each attempt counted in retry_count is a whole kafkajs cycle.
import { IN_FLIGHT_DEFAULTS } from '../config';
import { FatalError, RecordsRejectedError, WeirError, toWeirError } from '../errors/errors';
import { retry, RetriesExhaustedError, type RetryOptions } from '../errors/retry';
import { SinkQueue, type QueueLimits, type QueuedWrite } from './queue';
import type { Logger } from '../log';
import type { Instrumentation } from '../metrics/events';
import type { DeadLetter } from '../pipeline/types';
import type { ResultBatch } from '../pipeline/results';
import type { RecordSink } from './jsonl';

/** A sink, the name messages and dead letters give it (`sinks[1]`, `deadLetter`), and its queue's limits. */
export interface NamedSink<T> {
  name: string;
  sink: RecordSink<T>;
  limits?: Partial<QueueLimits>;
}

/** Where the input stood when a step produced its output (see DeadLetter.partition). */
export interface InputPosition {
  partition: number;
  offset: string;
}

/** A step fired by a wall-clock tick or by the end of the input: no input record. */
export const NO_POSITION: InputPosition = Object.freeze({ partition: -1, offset: '' });

/** Queue limits where the caller gives none: the config's in-flight defaults, writes of at most 2,000 records, no linger. */
const DEFAULT_LIMITS: QueueLimits = { maxRecords: IN_FLIGHT_DEFAULTS.records, maxBytes: IN_FLIGHT_DEFAULTS.bytes, maxWriteRecords: 2_000, lingerMs: 0 };
/** What a queued dead letter counts for in maxBytes, beside its event's text. */
const DEAD_LETTER_BYTES = 300;

function deadLetterBytes(ds: readonly DeadLetter[]): number {
  let n = ds.length * DEAD_LETTER_BYTES;
  for (const d of ds) n += d.original_event.length;
  return n;
}

export interface DeliveryOptions {
  /** Result sinks: each write() gets the batches of one queued write, in order. */
  results: ReadonlyArray<NamedSink<ResultBatch>>;
  deadLetters: NamedSink<DeadLetter>;
  /** Backoff of transient failures (`cfg.retry`; `sleep` injected by tests). `onRetry` is Delivery's own. */
  retry: Omit<RetryOptions, 'onRetry'>;
  log: Logger;
  bus: Instrumentation;
  /** `processor_instance` of the dead letters it makes. */
  instanceId: string;
  /** Wall clock of their `timestamp`. @default Date.now */
  clock?: () => number;
}

export class Delivery {
  private readonly clock: () => number;
  private readonly resultQueues: Array<SinkQueue<ResultBatch, InputPosition>>;
  private readonly dlq: SinkQueue<DeadLetter, InputPosition>;
  private seq = 0;
  private written = 0;
  private failure: Error | undefined;
  private failureListeners: Array<() => void> = [];

  constructor(private readonly opts: DeliveryOptions) {
    this.clock = opts.clock ?? Date.now;
    const queue = <T>(s: NamedSink<T>, handle: (ws: ReadonlyArray<QueuedWrite<T, InputPosition>>) => Promise<void>): SinkQueue<T, InputPosition> =>
      new SinkQueue<T, InputPosition>(
        s.name,
        { ...DEFAULT_LIMITS, ...s.limits },
        async (ws) => {
          try {
            await handle(ws);
          } catch (e) {
            if (this.failure === undefined) {
              this.failure = e instanceof Error ? e : new Error(String(e));
              for (const l of this.failureListeners) l();
            }
            throw e;
          }
        },
        (records, bytes) => opts.bus.emit('sink.queue', { sink: s.name, records, bytes }),
      );
    this.resultQueues = opts.results.map((s) => queue(s, (ws) => this.toResultSink(s, ws)));
    this.dlq = queue(opts.deadLetters, (ws) => this.toDeadLetters(ws));
  }

  /** Calls `listener` once a queue failed (the loop wakes on it); returns the function that unsubscribes it. */
  onFailure(listener: () => void): () => void {
    this.failureListeners.push(listener);
    return () => (this.failureListeners = this.failureListeners.filter((l) => l !== listener));
  }

  /** Throws the failure of a queue that failed, if one did. */
  check(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** Dead letters written to the dead-letter queue so far. */
  get deadLettersWritten(): number {
    return this.written;
  }

  /**
   * Hands `results` (one batch per partition that fired: Output.parts) to every result
   * sink's queue and `deadLetters` to the dead-letter queue, and returns; it waits only
   * while a queue is full (back pressure). Each queue holds the batches (retain())
   * until its sink has taken them; the caller's own hold is the caller's to release. Throws
   * FatalError once a queue failed. Returns the sequence number of this step: a
   * barrier taken after it waits for it with flushUpTo().
   */
  async deliver(results: readonly ResultBatch[], deadLetters: readonly DeadLetter[], at: InputPosition): Promise<number> {
    const seq = ++this.seq;
    // Each queue holds the batches until its sink has written them (see ResultBatch.release).
    const batches = results.filter((b) => b.n > 0);
    let n = 0, bytes = 0;
    for (const b of batches) {
      n += b.n;
      bytes += b.json.length;
    }
    if (n > 0) for (const q of this.resultQueues) q.push(seq, batches.map((b) => b.retain()), bytes, at, n);
    if (deadLetters.length > 0) this.dlq.push(seq, deadLetters, deadLetterBytes(deadLetters), at);
    this.logRejectedEvents(deadLetters);
    for (const q of this.resultQueues) if (q.full) await q.space();
    if (this.dlq.full) await this.dlq.space();
    return seq;
  }

  /** The sequence number of the last step handed over: what a barrier taken now covers. */
  get barrier(): number {
    return this.seq;
  }

  /**
   * Resolves once everything of the steps up to `seq` is out of this process: every
   * result with every result sink (or dead-lettered), every dead letter in the
   * dead-letter queue, and the sinks flushed. A sink that cannot get there is unusable:
   * FatalError, naming it.
   */
  async flushUpTo(seq: number): Promise<void> {
    await Promise.all(this.resultQueues.map((q) => q.doneThrough(seq)));
    // The results of those steps that a sink did not take are queued as dead letters by now.
    await this.dlq.doneThrough(seq);
    // A sink whose queue failed after those steps has written them: its failure is a later step's.
    const healthy = this.opts.results.filter((_, i) => this.resultQueues[i]!.error === undefined) as Array<NamedSink<unknown>>;
    if (this.dlq.error === undefined) healthy.push(this.opts.deadLetters);
    await Promise.all(
      healthy.map(async (s) => {
        try {
          await s.sink.flush?.();
        } catch (e) {
          throw new FatalError(`${withName(s, messageOf(e))}; stopping`, e);
        }
      }),
    );
  }

  /** Everything handed over so far, out of this process (see flushUpTo). */
  flush(): Promise<void> {
    return this.flushUpTo(this.seq);
  }

  /** A result queue's worker: one write of what it gathered, and the dead letters of what the sink did not take. */
  private async toResultSink(s: NamedSink<ResultBatch>, ws: ReadonlyArray<QueuedWrite<ResultBatch, InputPosition>>): Promise<void> {
    const batches = ws.length === 1 ? ws[0]!.records : ws.flatMap((w) => w.records);
    let count = 0;
    for (const w of ws) count += w.count;
    const lost: Array<{ seq: number; dead: DeadLetter[] }> = [];
    try {
      await this.write(s, batches, count, 'result');
      this.opts.bus.emit('sink.up', { sink: s.name, up: true });
      for (const b of batches) b.release();
      return;
    } catch (e) {
      if (e instanceof RetriesExhaustedError) {
        this.logGaveUp(s, e, count);
        for (const w of ws) lost.push({ seq: w.seq, dead: this.gaveUp(s, w, e) });
      }
      else if (e instanceof RecordsRejectedError) for (const w of ws) lost.push({ seq: w.seq, dead: await this.oneByOne(s, w, e, count === 1) });
      else throw this.unusable(s, e);
    }
    // The dead letters hold copies of the results' text.
    for (const b of batches) b.release();
    // Numbered as the step they came from: a checkpoint past that step waits for them too.
    for (const { seq, dead } of lost) this.dlq.push(seq, dead, deadLetterBytes(dead), NO_POSITION);
  }

  /** The dead-letter queue's worker. */
  private async toDeadLetters(ws: ReadonlyArray<QueuedWrite<DeadLetter, InputPosition>>): Promise<void> {
    const all = ws.length === 1 ? ws[0]!.records : ws.flatMap((w) => w.records);
    try {
      await this.write(this.opts.deadLetters, all, all.length, 'dead letter');
    } catch (e) {
      throw new FatalError(`cannot write ${all.length} dead letter(s) to the dead-letter queue, stopping: ${messageOf(e)}`, e);
    }
    this.written += all.length;
    this.opts.bus.emit('sink.up', { sink: this.opts.deadLetters.name, up: true });
  }

  /**
   * A write was refused for some of its records: find which of push `w`'s, write the
   * others. `alone`: the write held just this one record, so it is the refused one.
   */
  private async oneByOne(s: NamedSink<ResultBatch>, w: QueuedWrite<ResultBatch, InputPosition>, first: RecordsRejectedError, alone: boolean): Promise<DeadLetter[]> {
    const lost: DeadLetter[] = [];
    const refused = (b: ResultBatch, i: number, e: RecordsRejectedError): void => {
      this.opts.bus.emit('error', { kind: 'permanent' });
      lost.push(this.undeliverable(s, b, i, 0, e, w.at));
    };
    let gone: RetriesExhaustedError | undefined;
    for (const b of w.records) {
      for (let i = 0; i < b.n; i++) {
        if (gone !== undefined) {
          // The sink went away meanwhile: the rest are undeliverable, as a whole write's would be.
          lost.push(this.undeliverable(s, b, i, gone.retryCount, gone, w.at));
          continue;
        }
        if (alone) {
          refused(b, i, first);
          continue;
        }
        try {
          // In order, one at a time: the last result of a window is still the last written.
          await this.write(s, [b.slice(i, i + 1)], 1, 'result');
        } catch (e) {
          if (e instanceof RecordsRejectedError) refused(b, i, e);
          else if (e instanceof RetriesExhaustedError) {
            gone = e;
            this.logGaveUp(s, e, w.count - i);
            lost.push(this.undeliverable(s, b, i, e.retryCount, e, w.at));
          } else throw this.unusable(s, e);
        }
      }
    }
    const n = lost.filter((d) => d.retry_count === 0).length;
    if (n > 0)
      this.opts.log.warn(
        { kind: 'permanent', sink: s.name, refused: n, of: w.count },
        `${s.name} refused ${n} of ${w.count} result(s), dead-lettered as undeliverable: ${first.message}`,
      );
    return lost;
  }

  /** The results of one queued push whose write outlasted its retries, as dead letters. */
  private gaveUp(s: NamedSink<ResultBatch>, w: QueuedWrite<ResultBatch, InputPosition>, e: RetriesExhaustedError): DeadLetter[] {
    const dead: DeadLetter[] = [];
    for (const b of w.records) for (let i = 0; i < b.n; i++) dead.push(this.undeliverable(s, b, i, e.retryCount, e, w.at));
    return dead;
  }

  /** Logs and counts one write of `n` results that outlasted its retries. */
  private logGaveUp(s: NamedSink<ResultBatch>, e: RetriesExhaustedError, n: number): void {
    // retry() counts the failed attempts before each retry; this is the last one.
    this.opts.bus.emit('error', { kind: 'transient' });
    this.opts.log.error(
      { err: e, kind: 'transient', sink: s.name, retryCount: e.retryCount, results: n },
      `${n} result(s) dead-lettered as undeliverable: ${withName(s, e.message)}`,
    );
  }

  // A FatalError is counted and logged once, by whoever ends the run with it (the runner's report()).
  private unusable(s: NamedSink<ResultBatch>, e: unknown): FatalError {
    return new FatalError(`${withName(s, messageOf(e))}; stopping`, e);
  }

  /** Result i of `b` as a dead letter: its JSON line, as the JSON-lines sink writes it, is the original event. */
  private undeliverable(s: NamedSink<ResultBatch>, b: ResultBatch, i: number, retryCount: number, e: WeirError, at: InputPosition): DeadLetter {
    return {
      original_event: b.textOf(i),
      reason: 'undeliverable',
      error: withName(s, e.message),
      aggregation: b.nameOf(i),
      retry_count: retryCount,
      timestamp: new Date(this.clock()).toISOString(),
      processor_instance: this.opts.instanceId,
      partition: at.partition,
      offset: at.offset,
      sink: s.name,
    };
  }

  /** One write with retries of transient failures, each logged and counted. */
  private write<T>(s: NamedSink<T>, records: readonly T[], count: number, what: string): Promise<void> {
    return retry(() => Promise.resolve(s.sink.write(records)), {
      ...this.opts.retry,
      onRetry: (e, attempt, delayMs) => {
        this.opts.bus.emit('error', { kind: 'transient' });
        this.opts.bus.emit('sink.up', { sink: s.name, up: false });
        this.opts.log.warn(
          { err: e, kind: 'transient', sink: s.name, attempt, delayMs },
          `writing ${count} ${what}(s) to ${s.name} failed, retrying in ${delayMs} ms: ${e.message}`,
        );
      },
    });
  }

  /** Permanent failures on the input side are dead-lettered by the operator; they are logged here, one line per step. */
  private logRejectedEvents(deadLetters: readonly DeadLetter[]): void {
    let malformed = 0, invalid = 0;
    let first: DeadLetter | undefined;
    for (const d of deadLetters) {
      if (d.reason !== 'malformed' && d.reason !== 'invalid') continue;
      if (d.reason === 'malformed') malformed++;
      else invalid++;
      first ??= d;
    }
    if (first === undefined || !this.opts.log.isLevelEnabled('warn')) return;
    // Not the event itself: it may hold anything; the dead-letter queue has it.
    const where = { partition: first.partition, offset: first.offset, reason: first.reason, ...(first.aggregation === undefined ? {} : { aggregation: first.aggregation }) };
    this.opts.log.warn(
      { kind: 'permanent', malformed, invalid, first: where },
      `${malformed + invalid} dead letter(s) for malformed or invalid events (malformed ${malformed}, invalid ${invalid}), the first at partition ${first.partition} offset ${first.offset}`,
    );
  }
}

/** `message`, prefixed with the sink's name unless it names it already. */
function withName(s: NamedSink<unknown>, message: string): string {
  return message.includes(s.name) ? message : `${s.name}: ${message}`;
}

function messageOf(e: unknown): string {
  return toWeirError(e).message;
}
