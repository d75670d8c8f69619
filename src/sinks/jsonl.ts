// JSON-lines writers for results and dead letters: a file, stdout or stderr.
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Writable } from 'node:stream';
import { InputError } from '../errors/errors';
import { fileError } from '../errors/files';

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

/**
 * Writes each record as one JSON line. write() waits until the stream has handed its
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
  ) {
    out.on('error', (e: Error) => (this.failure = e));
  }

  /** `append`: keep what the file holds (a run resumed from a checkpoint); else start it empty. */
  static toFile<T>(path: string, what: string, append = false): Promise<JsonLinesSink<T>> {
    try {
      mkdirSync(dirname(path), { recursive: true });
    } catch (e) {
      return Promise.reject(fileError(e, `cannot create the directory of ${what} file ${path}`, dirname(path), 'user'));
    }
    const ws: WriteStream = createWriteStream(path, { flags: append ? 'a' : 'w' });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new JsonLinesSink<T>(ws, true, `${what} file ${path}`)));
      ws.once('error', (e) => reject(fileError(e, `cannot write ${what} file ${path}`, path, 'user')));
    });
  }

  async write(records: readonly T[]): Promise<void> {
    if (this.failure) throw new InputError(`cannot write ${this.what}: ${this.failure.message}`);
    if (records.length === 0) return;
    let text = '';
    for (const r of records) text += JSON.stringify(r) + '\n';
    // The callback comes once this text is written (after any queued before it), so it
    // also waits out back pressure; it may be called with the error that 'error' reports too.
    await new Promise<void>((resolve, reject) =>
      this.out.write(text, (e) => (e ? reject(new InputError(`cannot write ${this.what}: ${e.message}`)) : resolve())),
    );
    this.check();
  }

  /** Throws the stream's failure, if it had one. */
  private check(): void {
    if (this.failure) throw new InputError(`cannot write ${this.what}: ${this.failure.message}`);
  }

  async flush(): Promise<void> {
    // write() resolves only once its text is written, so there is rarely anything pending
    // (and an empty write is not free: /dev/full refuses even that).
    if ((this.out as Writable).writableLength > 0) {
      // Writes complete in order: the callback of an empty one comes after all before it.
      await new Promise<void>((resolve, reject) =>
        this.out.write('', (e) => (e ? reject(new InputError(`cannot write ${this.what}: ${e.message}`)) : resolve())),
      );
    }
    this.check();
  }

  async close(): Promise<void> {
    if (!this.ownsStream) return;
    const ws = this.out as WriteStream;
    await new Promise<void>((resolve) => ws.end(resolve));
    if (this.failure) throw new InputError(`cannot write ${this.what}: ${this.failure.message}`);
  }
}
