// Delivering what one operator step produced: its results to every result sink, then
// its dead letters to the dead-letter queue.
//
// What happens when a write fails (issue 4, "Errors"); every result and every event
// ends up delivered, counted in a delivered result, dead-lettered with a reason, or
// the run stops before a checkpoint moves past it: nothing is lost silently.
//
// - Transient failure of a result sink (unreachable, timeout, broker unavailable:
//   classify() says `transient`): retried with backoff, `cfg.retry` (100, 200, 400 ms
//   by default). When the retries run out, each result of that write becomes a dead
//   letter, reason `undeliverable`, `retry_count` the retries made, `error` naming the
//   sink and its last error, `sink` = `sinks[i]`; the run goes on. Other sinks still
//   get the results.
// - A sink that refuses the records themselves (RecordsRejectedError: a row its table
//   rejects, a message larger than the topic allows) is not retried: the write is
//   split into one record each, and only the refused ones are dead-lettered
//   (`undeliverable`, `retry_count` 0). A malformed or invalid event is the same kind
//   of failure (permanent) on the input side: the operator dead-letters it, and a
//   warning is logged per step.
// - Any other failure of a result sink (a file that cannot be written, a missing table
//   or permission, a bug) means the sink is unusable: dead-lettering every result from
//   then on would quietly move the output into the dead-letter queue, so the run stops.
// - The dead-letter queue is retried the same way, but when it cannot take a write,
//   nothing could record what is lost: the run stops (critical).
// A stop throws FatalError. The runner then writes no checkpoint (the operator's state
// already holds the failed step, whose offsets are not processed: a checkpoint would
// put state ahead of what was delivered), closes the source and sinks, and exits
// non-zero; a restart recovers from the last checkpoint and replays from there,
// writing the results since then again (the sinks keep the last result per window).
// Not here: a sink that cannot be opened at start fails the run before anything is
// read (the supervisor's restart is the retry); a Kafka sink's kafkajs retries on its
// own first (KafkaJSNumberOfRetriesExceeded of a retriable cause is transient, see
// sinks/kafka.ts), so each attempt counted in retry_count is a whole kafkajs cycle.
import { FatalError, RecordsRejectedError, WeirError, toWeirError } from '../errors/errors';
import { retry, RetriesExhaustedError, type RetryOptions } from '../errors/retry';
import type { Logger } from '../log';
import type { Instrumentation } from '../metrics/events';
import type { DeadLetter, WindowResult } from '../pipeline/types';
import type { RecordSink } from './jsonl';

/** A sink and the name messages and dead letters give it (`sinks[1]`, `deadLetter`). */
export interface NamedSink<T> {
  name: string;
  sink: RecordSink<T>;
}

/** Where the input stood when a step produced its output (see DeadLetter.partition). */
export interface InputPosition {
  partition: number;
  offset: string;
}

/** A step fired by a wall-clock tick or by the end of the input: no input record. */
export const NO_POSITION: InputPosition = Object.freeze({ partition: -1, offset: '' });

export interface DeliveryOptions {
  results: ReadonlyArray<NamedSink<WindowResult>>;
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

  constructor(private readonly opts: DeliveryOptions) {
    this.clock = opts.clock ?? Date.now;
  }

  /**
   * Writes `results` to every result sink, then `deadLetters` and the results a sink
   * did not take to the dead-letter queue. Resolves with the number of dead letters
   * written; throws FatalError when the run must stop.
   */
  async deliver(results: readonly WindowResult[], deadLetters: readonly DeadLetter[], at: InputPosition): Promise<number> {
    let all = deadLetters;
    if (results.length > 0) {
      for (const s of this.opts.results) {
        const lost = await this.toResultSink(s, results, at);
        if (lost.length > 0) all = all.concat(lost);
      }
    }
    this.logRejectedEvents(deadLetters);
    if (all.length === 0) return 0;
    const dlq = this.opts.deadLetters;
    try {
      await this.write(dlq, all, 'dead letter');
    } catch (e) {
      throw new FatalError(`cannot write ${all.length} dead letter(s) to the dead-letter queue, stopping: ${messageOf(e)}`, e);
    }
    return all.length;
  }

  /**
   * Everything written so far out of this process, before a checkpoint moves past it. A
   * sink that cannot get there is unusable: FatalError, naming it.
   */
  async flush(): Promise<void> {
    await Promise.all(
      [...this.opts.results, this.opts.deadLetters].map(async (s: NamedSink<unknown>) => {
        try {
          await s.sink.flush?.();
        } catch (e) {
          throw new FatalError(`${withName(s, messageOf(e))}; stopping`, e);
        }
      }),
    );
  }

  /** Writes `records` to one result sink; returns the dead letters of those it did not take. */
  private async toResultSink(s: NamedSink<WindowResult>, records: readonly WindowResult[], at: InputPosition): Promise<DeadLetter[]> {
    try {
      await this.write(s, records, 'result');
      return [];
    } catch (e) {
      if (e instanceof RetriesExhaustedError) return this.gaveUp(s, records, e, at);
      if (e instanceof RecordsRejectedError) return this.oneByOne(s, records, e, at);
      throw this.unusable(s, e);
    }
  }

  /** A write was refused for some of its records: find which, write the others. */
  private async oneByOne(s: NamedSink<WindowResult>, records: readonly WindowResult[], first: RecordsRejectedError, at: InputPosition): Promise<DeadLetter[]> {
    const lost: DeadLetter[] = [];
    const refused = (r: WindowResult, e: RecordsRejectedError): void => {
      this.opts.bus.emit('error', { kind: 'permanent' });
      lost.push(this.undeliverable(s, r, 0, e, at));
    };
    if (records.length === 1) refused(records[0]!, first);
    else {
      for (let i = 0; i < records.length; i++) {
        const r = records[i]!;
        try {
          // In order, one at a time: the last result of a window is still the last written.
          await this.write(s, [r], 'result');
        } catch (e) {
          if (e instanceof RecordsRejectedError) refused(r, e);
          else if (e instanceof RetriesExhaustedError) {
            // The sink went away meanwhile: this and the rest are undeliverable, as a whole write would be.
            lost.push(...this.gaveUp(s, records.slice(i), e, at));
            break;
          } else throw this.unusable(s, e);
        }
      }
    }
    const n = lost.filter((d) => d.retry_count === 0).length;
    if (n > 0)
      this.opts.log.warn(
        { kind: 'permanent', sink: s.name, refused: n, of: records.length },
        `${s.name} refused ${n} of ${records.length} result(s), dead-lettered as undeliverable: ${first.message}`,
      );
    return lost;
  }

  private gaveUp(s: NamedSink<WindowResult>, records: readonly WindowResult[], e: RetriesExhaustedError, at: InputPosition): DeadLetter[] {
    // retry() counts the failed attempts before each retry; this is the last one.
    this.opts.bus.emit('error', { kind: 'transient' });
    this.opts.log.error(
      { err: e, kind: 'transient', sink: s.name, retryCount: e.retryCount, results: records.length },
      `${records.length} result(s) dead-lettered as undeliverable: ${withName(s, e.message)}`,
    );
    return records.map((r) => this.undeliverable(s, r, e.retryCount, e, at));
  }

  // A FatalError is counted and logged once, by whoever ends the run with it (the runner's report()).
  private unusable(s: NamedSink<WindowResult>, e: unknown): FatalError {
    return new FatalError(`${withName(s, messageOf(e))}; stopping`, e);
  }

  private undeliverable(s: NamedSink<WindowResult>, r: WindowResult, retryCount: number, e: WeirError, at: InputPosition): DeadLetter {
    return {
      original_event: JSON.stringify(r),
      reason: 'undeliverable',
      error: withName(s, e.message),
      aggregation: r.name,
      retry_count: retryCount,
      timestamp: new Date(this.clock()).toISOString(),
      processor_instance: this.opts.instanceId,
      partition: at.partition,
      offset: at.offset,
      sink: s.name,
    };
  }

  /** One write with retries of transient failures, each logged and counted. */
  private write<T>(s: NamedSink<T>, records: readonly T[], what: string): Promise<void> {
    return retry(() => Promise.resolve(s.sink.write(records)), {
      ...this.opts.retry,
      onRetry: (e, attempt, delayMs) => {
        this.opts.bus.emit('error', { kind: 'transient' });
        this.opts.log.warn(
          { err: e, kind: 'transient', sink: s.name, attempt, delayMs },
          `writing ${records.length} ${what}(s) to ${s.name} failed, retrying in ${delayMs} ms: ${e.message}`,
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
