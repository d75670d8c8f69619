// The one retry helper: retries what classify() calls transient, with exponential
// backoff, and wraps the last error when retries run out (kafkajs's retry/:
// https://github.com/tulios/kafkajs/blob/master/src/retry/index.js).
import { setTimeout as delay } from 'node:timers/promises';
import { classify } from './classify';
import { WeirError, messageOf, toWeirError } from './errors';

export interface RetryOptions {
  /** Retries after the first attempt (so at most retries + 1 attempts). @default 3, or unbounded when maxElapsedMs is given */
  retries?: number;
  /** No retry starts once this long (ms) has passed since the first attempt. @default unbounded */
  maxElapsedMs?: number;
  /** Clock of maxElapsedMs, ms. @default performance.now */
  now?: () => number;
  /** Delay before the first retry, ms. @default 100 */
  initialDelayMs?: number;
  /** Each delay is the previous one times this. @default 2 */
  factor?: number;
  /** Upper bound of one delay, ms. @default unbounded */
  maxDelayMs?: number;
  /** Waits `ms`; tests inject one that records and returns at once. @default a timer */
  sleep?: (ms: number) => Promise<void>;
  /** Called before each retry with the error of the failed attempt, its 1-based number and the delay before the next one. */
  onRetry?: (e: WeirError, attempt: number, delayMs: number) => void;
}

/** Thrown when a transient failure outlasted every retry; `cause` is the last error. */
export class RetriesExhaustedError extends WeirError {
  /** Retries made (attempts - 1): what a dead letter records as `retry_count`. */
  readonly retryCount: number;

  constructor(message: string, retryCount: number, cause: unknown) {
    super(message, { domain: 'external', retriable: false, cause });
    this.retryCount = retryCount;
  }
}

const defaultSleep = (ms: number): Promise<void> => delay(ms);

/**
 * Runs `fn(attempt)` (attempt is 1 for the first try) until it resolves. Transient
 * failures are retried after `initialDelayMs * factor^n` ms (100, 200, 400 by
 * default), each delay at most `maxDelayMs`; a permanent or critical failure is
 * rethrown at once as a WeirError; when `retries` retries were made, or the next one
 * would start past `maxElapsedMs`, a RetriesExhaustedError wrapping the last error is
 * thrown.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const retries = opts.retries ?? (opts.maxElapsedMs === undefined ? 3 : Number.POSITIVE_INFINITY);
  const maxElapsedMs = opts.maxElapsedMs ?? Number.POSITIVE_INFINITY;
  const now = opts.now ?? (() => performance.now());
  const t0 = now();
  let waited = 0;
  const factor = opts.factor ?? 2;
  const maxDelayMs = opts.maxDelayMs ?? Number.POSITIVE_INFINITY;
  const sleep = opts.sleep ?? defaultSleep;
  let delayMs = opts.initialDelayMs ?? 100;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      const kind = classify(e);
      // Converted once, keeping its kind: a foreign permanent error (a SyntaxError) stays permanent.
      if (kind === 'permanent' && !(e instanceof WeirError)) throw new WeirError(messageOf(e), { domain: 'user', cause: e });
      if (kind !== 'transient') throw toWeirError(e);
      const err = toWeirError(e);
      const wait = Math.min(delayMs, maxDelayMs);
      // Elapsed: the clock's, or the delays slept when the clock does not move (an injected sleep).
      const elapsed = Math.max(now() - t0, waited);
      if (attempt > retries || elapsed + wait > maxElapsedMs) {
        const made = attempt - 1;
        throw new RetriesExhaustedError(
          `${err.message} (gave up after ${attempt} attempt${attempt === 1 ? '' : 's'} over ${Math.round(elapsed)} ms, ${made} retr${made === 1 ? 'y' : 'ies'})`,
          made,
          e,
        );
      }
      opts.onRetry?.(err, attempt, wait);
      await sleep(wait);
      waited += wait;
      delayMs *= factor;
    }
  }
}
