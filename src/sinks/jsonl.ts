// JSON-lines writers for results and dead letters: a file, stdout or stderr.
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { once } from 'node:events';
import { InputError } from '../errors/errors';

export interface RecordSink<T> {
  write(records: readonly T[]): Promise<void> | void;
  /** Resolves once everything written so far is out of this process (a kill -9 then loses none of it). Sinks whose write() resolves only then need none. */
  flush?(): Promise<void>;
  close(): Promise<void>;
}

/** Writes each record as one JSON line, waiting for the stream to drain when it asks to. */
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
      return Promise.reject(new InputError(`cannot create the directory of ${what} file ${path}: ${(e as Error).message}`));
    }
    const ws: WriteStream = createWriteStream(path, { flags: append ? 'a' : 'w' });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new JsonLinesSink<T>(ws, true, what)));
      ws.once('error', (e) => reject(new InputError(`cannot write ${what} file ${path}: ${e.message}`)));
    });
  }

  async write(records: readonly T[]): Promise<void> {
    if (this.failure) throw new InputError(`cannot write ${this.what}: ${this.failure.message}`);
    if (records.length === 0) return;
    let text = '';
    for (const r of records) text += JSON.stringify(r) + '\n';
    if (!this.out.write(text)) await once(this.out, 'drain');
  }

  async flush(): Promise<void> {
    // Writes complete in order: the callback of an empty one comes after all before it.
    await new Promise<void>((resolve, reject) => this.out.write('', (e) => (e ? reject(e) : resolve())));
    if (this.failure) throw new InputError(`cannot write ${this.what}: ${this.failure.message}`);
  }

  async close(): Promise<void> {
    if (!this.ownsStream) return;
    const ws = this.out as WriteStream;
    await new Promise<void>((resolve) => ws.end(resolve));
    if (this.failure) throw new InputError(`cannot write ${this.what}: ${this.failure.message}`);
  }
}
