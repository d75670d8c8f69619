// JSON-lines writers for results and dead letters: a file, stdout or stderr.
import { closeSync, createWriteStream, ftruncateSync, fstatSync, mkdirSync, openSync, readSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Writable } from 'node:stream';
import { InputError, OutputClosedError, type WeirError } from '../errors/errors';
import { fileError } from '../errors/files';
import { encodeDeadLetters, type ResultBatch } from '../pipeline/results';
import type { DeadLetter } from '../pipeline/types';

export interface RecordSink<T> {
  /**
   * Resolves once the records are out of this process (or acknowledged), so that a
   * failure is reported by the write whose records it lost. Throws a WeirError: retriable
   * for a failure that may pass, RecordsRejectedError for records the sink refuses.
   */
  write(records: readonly T[]): Promise<void> | void;
  /** Resolves once everything written so far is out of this process (a kill -9 then loses none of it). Sinks whose write() resolves only then need none. */
  flush?(): Promise<void>;
  close(): Promise<void>;
}

/** Where a warning goes: a pino Logger is one. */
export interface WarnLog {
  warn(fields: Record<string, unknown>, msg: string): void;
}

/**
 * Cuts a torn last line off a JSON-lines file: a crash or a full disk in the middle of a
 * write leaves a line without its newline, and appending to it would glue the next record
 * onto it, making both unreadable. Truncates the file to just after its last newline (to
 * empty if it has none); returns the bytes cut, 0 for a missing, empty or whole file.
 */
export function cutTornLine(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, 'r+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return 0;
    // Backwards in chunks from the end: a whole file costs one byte read.
    const chunk = Buffer.alloc(Math.min(size, 64 * 1024));
    let end = size;
    let keep = 0;
    search: while (end > 0) {
      const n = Math.min(end === size ? 1 : chunk.length, end);
      readSync(fd, chunk, 0, n, end - n);
      for (let i = n - 1; i >= 0; i--) {
        if (chunk[i] === 0x0a) {
          keep = end - n + i + 1;
          break search;
        }
      }
      end -= n;
    }
    if (keep === size) return 0;
    ftruncateSync(fd, keep);
    return size - keep;
  } finally {
    closeSync(fd);
  }
}

/** How a JSON-lines sink turns the records of one write into text: one string, or buffers written in order. */
export type LineFormat<T> = (records: readonly T[]) => string | readonly Buffer[];

/** Results: the batches' JSON lines, as the encoder wrote them (no copy). */
export const RESULT_LINES: LineFormat<ResultBatch> = (batches) => batches.map((b) => b.json);

/** Dead letters: JSON.stringify of each, one per line (encodeDeadLetters: written to a Buffer line by line). */
export const DEAD_LETTER_LINES: LineFormat<DeadLetter> = (records) => [encodeDeadLetters(records).json];

/**
 * Writes each record as one JSON line (`format` makes the text). write() waits until the stream has handed its
 * text to the OS: one wait per write (a batch), and a failure (a full disk) is reported
 * by the write that failed. A stream that failed once stays failed: its errors are
 * permanent (InputError), never retried.
 */
export class JsonLinesSink<T> implements RecordSink<T> {
  private failure: Error | undefined;

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly ownsStream: boolean,
    private readonly what: string,
    private readonly format: LineFormat<T>,
  ) {
    out.on('error', (e: Error) => (this.failure = e));
  }

  /**
   * `append`: keep what the file holds (a run resumed from a checkpoint), after cutting a
   * torn last line (see cutTornLine), which is logged as a warning on `log` (on stderr
   * without one); else start it empty.
   */
  static toFile<T>(path: string, what: string, format: LineFormat<T>, append = false, log?: WarnLog): Promise<JsonLinesSink<T>> {
    try {
      mkdirSync(dirname(path), { recursive: true });
    } catch (e) {
      return Promise.reject(fileError(e, `cannot create the directory of ${what} file ${path}`, dirname(path), 'user'));
    }
    if (append) {
      let cut: number;
      try {
        cut = cutTornLine(path);
      } catch (e) {
        return Promise.reject(new InputError(`cannot write ${what} file ${path}: ${(e as Error).message}`));
      }
      if (cut > 0) {
        const msg = `${what} file ${path} ended in a torn line (no newline, from a crash or a full disk): cut its last ${cut} byte(s) before appending`;
        if (log !== undefined) log.warn({ file: path, bytesCut: cut }, msg);
        else process.stderr.write(`weir: warning: ${msg}\n`);
      }
    }
    const ws: WriteStream = createWriteStream(path, { flags: append ? 'a' : 'w' });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new JsonLinesSink<T>(ws, true, `${what} file ${path}`, format)));
      ws.once('error', (e) => reject(fileError(e, `cannot write ${what} file ${path}`, path, 'user')));
    });
  }

  async write(records: readonly T[]): Promise<void> {
    this.check();
    if (records.length === 0) return;
    const text = this.format(records);
    // The callback comes once this text is written (after any queued before it), so it
    // also waits out back pressure; it may be called with the error that 'error' reports too.
    await new Promise<void>((resolve, reject) => {
      const done = (e: Error | null | undefined): void => (e ? reject(this.failed(e)) : resolve());
      if (typeof text === 'string') this.out.write(text, done);
      else if (text.length === 0) resolve();
      else {
        // Corked, the buffers go to the file in one writev; writes complete in order, so
        // the last one's callback comes after the others'.
        const w = this.out as Writable;
        const last = text.length - 1;
        w.cork();
        text.forEach((b, i) => (i === last ? w.write(b, done) : w.write(b)));
        w.uncork();
      }
    });
    this.check();
  }

  /** Throws the stream's failure, if it had one. */
  private check(): void {
    if (this.failure) throw this.failed(this.failure);
  }

  /** A closed pipe (EPIPE: the reader left, as `head` does) is not the sink's failure: see OutputClosedError. */
  private failed(e: Error): WeirError {
    if ((e as NodeJS.ErrnoException).code === 'EPIPE') return new OutputClosedError(`${this.what}: the reader closed the pipe`, e);
    return new InputError(`cannot write ${this.what}: ${e.message}`, e);
  }

  async flush(): Promise<void> {
    // write() resolves only once its text is written, so there is rarely anything pending
    // (and an empty write is not free: /dev/full refuses even that).
    if ((this.out as Writable).writableLength > 0) {
      // Writes complete in order: the callback of an empty one comes after all before it.
      await new Promise<void>((resolve, reject) =>
        this.out.write('', (e) => (e ? reject(this.failed(e)) : resolve())),
      );
    }
    this.check();
  }

  async close(): Promise<void> {
    if (!this.ownsStream) return;
    const ws = this.out as WriteStream;
    await new Promise<void>((resolve) => ws.end(resolve));
    this.check();
  }
}
