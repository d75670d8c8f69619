// Weir as a library: `import { createProcessor } from 'weir'`.
//
// The program that embeds Weir hands it events and gets results and dead letters back;
// there is no source, sink or state backend. Underneath it is what `weir run` does
// with a file: one PartitionedOperator (the same WebAssembly core, the same
// watermarks, lateness and firing), fed with batches of at most processing.batchSize
// records, and W = +infinity at the end of the input. So a processor given the lines
// of a file emits what `weir run` emits for that file (up to emittedAt and the
// dead-letter timestamps, which are the wall clock).
import type { z } from 'zod';
import { validateConfig, type configSchema, type Config } from './config';
import { ConfigError, InputError, WeirError } from './errors/errors';
import type { Output } from './pipeline/operator';
import { PartitionedOperator } from './pipeline/partitioned';
import type { DeadLetter, RecordBatch, WindowResult } from './pipeline/types';

export type { Config, AggregationConfig, WindowConfig } from './config';
export type { DeadLetter, DeadLetterReason, WindowResult } from './pipeline/types';
export { ConfigError, InputError, WeirError } from './errors/errors';

/** A config as written in a YAML or JSON file for `weir run`: durations may be strings ("5m"), defaults may be left out. */
export type ConfigInput = z.input<typeof configSchema>;

/**
 * What createProcessor takes: a `weir run` config without its source (events come
 * from push()), or with `source: {type: none}`. Only `eventTime`, `aggregations` and
 * `processing` are used; the other sections (`sinks`, `deadLetter`, `state`,
 * `checkpoint`, `metrics`, `retry`, `log`) are validated, so that one file can serve
 * both, and otherwise ignored: results and dead letters go to the program.
 */
export type ProcessorConfig = Omit<ConfigInput, 'source'> & { source?: { type: 'none' } };

/** One event: an object, or the JSON text of one (a string or bytes, as a Kafka message value). */
export type EventInput = object | string | Uint8Array;

/** What the processor emits, in order: each result and dead letter as it is produced. */
export type Emitted = { kind: 'result'; result: WindowResult } | { kind: 'deadLetter'; deadLetter: DeadLetter };

/**
 * An exception thrown by a callback propagates out of the push() or end() that
 * called it; the processor's state already holds that push, and the results and
 * dead letters after the one that threw are not delivered again.
 */
export interface ProcessorOptions {
  /** Receives each result (every firing, late re-firings included) during push() or end(). Without it, results go to the async iterator. */
  onResult?: (result: WindowResult) => void;
  /** Receives each dead letter during push() or end(). Without it, dead letters go to the async iterator. */
  onDeadLetter?: (deadLetter: DeadLetter) => void;
  /** Wall clock, epoch ms: results' emittedAt and dead letters' timestamp. @default Date.now */
  clock?: () => number;
}

/** Counts since the processor was created. */
export interface ProcessorStats {
  /** Records taken (events, malformed and blank lines included). */
  records: number;
  results: number;
  deadLetters: number;
  /** Events too late for at least one of their windows, summed over aggregations. */
  lateEvents: number;
}

export interface Processor extends AsyncIterable<Emitted> {
  /**
   * Processes events at once; their results and dead letters are delivered before it
   * returns. An array holds one event per element. A string or bytes is JSON-lines
   * text, cut at `\n`, and may end within a line: the rest comes with the next push
   * (or end()), so chunks of a stream can be pushed as they arrive. Blank lines are
   * skipped; a line or element that is not a JSON object is dead-lettered `malformed`.
   * Dead letters' `offset` is the 0-based index of the record among all pushed so
   * far (a file's line number when its lines are pushed), `partition` is 0.
   * Pushing arrays of many events is much faster than one event per call.
   * @throws InputError after end(), for an object JSON.stringify cannot serialize (nothing of that push is processed), or for an array while a line is unfinished
   */
  push(events: EventInput | readonly EventInput[]): void;
  /**
   * The end of the input: the unfinished line, if any, is processed, W becomes
   * +infinity, every open window fires (once more if it changed since it last fired),
   * and the async iterator finishes. Calling it again does nothing.
   */
  end(): void;
  /** The watermark W, epoch ms: -Infinity before the first valid event, +Infinity after end(). */
  readonly watermarkMs: number;
  readonly stats: Readonly<ProcessorStats>;
}

/**
 * The results of one operator step as objects, in firing order. The only place that
 * knows how Output holds them.
 */
function resultsOf(out: Output): readonly WindowResult[] {
  const results = out.results.toObjects();
  out.results.release(); // copies: its memory goes to later results
  return results;
}

/** Validates a ProcessorConfig with the CLI's schema and messages. */
function processorConfig(raw: unknown): Config {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return validateConfig(raw);
  const { source, ...rest } = raw as Record<string, unknown>;
  if (source !== undefined) {
    const s = source as Record<string, unknown> | null;
    if (typeof s !== 'object' || s === null || s['type'] !== 'none')
      throw new ConfigError(`config: source: createProcessor takes its events from push(); leave source out or set it to {type: none}`);
    const extra = Object.keys(s).filter((k) => k !== 'type');
    if (extra.length > 0) throw new ConfigError(`config: source: unknown key${extra.length > 1 ? 's' : ''} ${extra.map((k) => `"${k}"`).join(', ')}`);
  }
  // The operator reads eventTime, aggregations and processing; of the source only
  // whether it can idle. Pushed events are a file's lines: never idle, so W stays the
  // plain max - maxOutOfOrderness of the one partition, however long between pushes.
  return validateConfig({ ...rest, source: { type: 'file', path: '(pushed events)' } });
}

/**
 * A processor for `config` (the `weir run` config, without a source).
 * @throws ConfigError naming the first wrong key, as `weir run` reports it
 */
export function createProcessor(config: ProcessorConfig, options: ProcessorOptions = {}): Processor {
  const cfg = processorConfig(config);
  const clock = options.clock ?? Date.now;
  const op = new PartitionedOperator(cfg, { clock, gone: false });
  const batchSize = cfg.processing.batchSize;
  const stats: ProcessorStats = { records: 0, results: 0, deadLetters: 0, lateEvents: 0 };
  // What the async iterator has yet to take: queue[head..].
  let queue: Emitted[] = [];
  let head = 0;
  let waiting: ((r: IteratorResult<Emitted>) => void) | undefined;
  let iterating = false;
  let ended = false;
  let offset = 0; // index of the next record
  let carry: Buffer = Buffer.alloc(0); // an unfinished line of pushed text
  const starts = new Uint32Array(batchSize), ends = new Uint32Array(batchSize);

  const give = (e: Emitted): void => {
    if (waiting !== undefined) {
      const w = waiting;
      waiting = undefined;
      w({ value: e, done: false });
    } else queue.push(e);
  };

  const deliver = (out: Output): void => {
    const results = resultsOf(out);
    stats.records += out.records;
    stats.results += results.length;
    stats.deadLetters += out.deadLetters.length;
    for (const l of out.late) stats.lateEvents += l;
    for (const result of results) {
      if (options.onResult !== undefined) options.onResult(result);
      else give({ kind: 'result', result });
    }
    for (const deadLetter of out.deadLetters) {
      if (options.onDeadLetter !== undefined) options.onDeadLetter(deadLetter);
      else give({ kind: 'deadLetter', deadLetter });
    }
  };

  /** Runs records [0, n) of buf (bounds in starts/ends) through the operator. */
  const step = (buf: Buffer, n: number): void => {
    const batch: RecordBatch = { buf, starts, ends, n, partition: 0, firstOffset: offset };
    offset += n;
    deliver(op.process(batch));
  };

  /** Cuts buf into lines and processes them in batches; returns where the unfinished last line starts. */
  const lines = (buf: Buffer): number => {
    let pos = 0, n = 0;
    for (let nl = buf.indexOf(10, pos); nl >= 0; nl = buf.indexOf(10, pos)) {
      starts[n] = pos;
      ends[n] = nl;
      n++;
      pos = nl + 1;
      if (n === batchSize) {
        step(buf, n);
        n = 0;
      }
    }
    if (n > 0) step(buf, n);
    return pos;
  };

  const texts = (events: readonly EventInput[]): Buffer[] =>
    events.map((e, i) => {
      if (typeof e === 'string') return Buffer.from(e);
      if (e instanceof Uint8Array) return Buffer.from(e.buffer, e.byteOffset, e.byteLength);
      // JSON.stringify gives undefined (despite its type) for a function or a symbol.
      let text: unknown;
      try {
        text = JSON.stringify(e);
      } catch (err) {
        throw new InputError(`push: events[${i}]: cannot be written as JSON: ${(err as Error).message}`, err);
      }
      if (typeof text !== 'string') throw new InputError(`push: events[${i}]: cannot be written as JSON (${typeof e})`);
      return Buffer.from(text);
    });

  const push = (events: EventInput | readonly EventInput[]): void => {
    if (ended) throw new InputError('push: the processor has ended (end() was called)');
    if (Array.isArray(events)) {
      if (carry.length > 0) throw new InputError('push: pushed text ends within a line; push the rest of it (or "\\n") before an array of events');
      const all = texts(events);
      for (let i = 0; i < all.length; i += batchSize) {
        const part = all.slice(i, i + batchSize);
        // One buffer per batch, records separated by a byte the scanner never reads.
        let pos = 0;
        part.forEach((t, k) => {
          starts[k] = pos;
          pos += t.length;
          ends[k] = pos;
          pos += 1;
        });
        step(Buffer.concat(part.flatMap((t) => [t, NEWLINE])), part.length);
      }
      return;
    }
    const e = events;
    if (typeof e !== 'string' && !(e instanceof Uint8Array)) return push([e]);
    const chunk = typeof e === 'string' ? Buffer.from(e) : Buffer.from(e.buffer, e.byteOffset, e.byteLength);
    const buf = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
    const rest = lines(buf);
    // A copy: the caller may reuse the bytes it pushed.
    carry = Buffer.from(buf.subarray(rest));
  };

  const end = (): void => {
    if (ended) return;
    ended = true;
    if (carry.length > 0) {
      // The last line has no '\n'; it still counts, as a file's does.
      starts[0] = 0;
      ends[0] = carry.length;
      step(carry, 1);
      carry = Buffer.alloc(0);
    }
    deliver(op.finish());
    waiting?.({ value: undefined, done: true });
    waiting = undefined;
  };

  return {
    push,
    end,
    get watermarkMs() {
      return op.watermarks.current;
    },
    get stats() {
      return { ...stats };
    },
    [Symbol.asyncIterator](): AsyncIterator<Emitted> {
      if (iterating) throw new WeirError('a processor has one async iterator: its results are not copied to a second', { domain: 'user' });
      iterating = true;
      return {
        next: () => {
          if (head < queue.length) {
            const e = queue[head++]!;
            if (head === queue.length) {
              queue = [];
              head = 0;
            }
            return Promise.resolve({ value: e, done: false });
          }
          if (ended) return Promise.resolve({ value: undefined, done: true });
          return new Promise((resolve) => (waiting = resolve));
        },
      };
    },
  };
}

const NEWLINE = Buffer.from('\n');
