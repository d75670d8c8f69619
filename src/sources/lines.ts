// Splitting byte streams into line records, batched for the core.
import { open } from 'node:fs/promises';
import { InputError } from '../errors/errors';
import { fileError } from '../errors/files';
import type { RecordBatch } from '../pipeline/types';

const READ_BYTES = 4 << 20;

/** A reusable batch: the consumer handles each one before asking for the next. */
function newBatch(batchSize: number, partition: number): RecordBatch {
  return { buf: Buffer.alloc(0), starts: new Uint32Array(batchSize), ends: new Uint32Array(batchSize), n: 0, partition, firstOffset: 0 };
}

/**
 * Cuts `buf[0, limit)` into lines ending at '\n' and yields full batches; returns
 * where the unfinished last line starts. Line numbers continue from `line`.
 */
function* cut(buf: Buffer, limit: number, b: RecordBatch, batchSize: number, counter: { line: number }): Generator<RecordBatch, number> {
  let pos = 0;
  b.buf = buf;
  b.n = 0;
  b.firstOffset = counter.line;
  for (;;) {
    const nl = buf.indexOf(10, pos);
    if (nl < 0 || nl >= limit) break;
    b.starts[b.n] = pos;
    b.ends[b.n] = nl;
    b.n++;
    counter.line++;
    pos = nl + 1;
    if (b.n === batchSize) {
      yield b;
      b.n = 0;
      b.firstOffset = counter.line;
    }
  }
  if (b.n > 0) yield b;
  return pos;
}

/**
 * Batches of the lines of a file, read to its end. Offsets are 0-based line numbers.
 * Two buffers: while the lines of one are handed out, the next read fills the other
 * (the main thread would otherwise wait for each read in turn: a tenth of a run from a
 * file with light work per event).
 */
export async function* fileBatches(path: string, batchSize: number, partition = 0, readBytes = READ_BYTES): AsyncGenerator<RecordBatch> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError(`input file not found: ${path} (source.path)`);
    throw fileError(e, `cannot open input file ${path} (source.path)`, path);
  }
  const read = async (into: Buffer, at: number): Promise<number> => {
    try {
      return (await fh.read(into, at, into.length - at, null)).bytesRead;
    } catch (e) {
      // A directory opens for reading; it fails here (EISDIR), as a failing disk does (EIO).
      throw fileError(e, `cannot read input file ${path} (source.path)`, path);
    }
  };
  let next: Promise<number> | undefined;
  try {
    let buf = Buffer.allocUnsafe(readBytes);
    let spare = Buffer.allocUnsafe(readBytes);
    let have = 0;
    const b = newBatch(batchSize, partition);
    const counter = { line: 0 };
    let bytesRead = await read(buf, 0);
    while (bytesRead > 0) {
      const limit = have + bytesRead;
      // The unfinished last line goes first into the other buffer, the next read after it.
      const rest = buf.lastIndexOf(10, limit - 1) + 1;
      if (rest === 0) {
        // No whole line: one line longer than the buffer. Grow it and read on.
        if (limit === buf.length) {
          const bigger = Buffer.allocUnsafe(buf.length * 2);
          buf.copy(bigger, 0, 0, limit);
          buf = bigger;
          spare = Buffer.allocUnsafe(bigger.length);
        }
        have = limit;
        bytesRead = await read(buf, have);
        continue;
      }
      have = limit - rest;
      buf.copy(spare, 0, rest, limit);
      next = read(spare, have);
      // Settled by the await below; a stop in between must not leave it unhandled.
      next.catch(() => undefined);
      yield* cut(buf, rest, b, batchSize, counter);
      bytesRead = await next;
      next = undefined;
      [buf, spare] = [spare, buf];
    }
    if (have > 0) {
      // The last line has no '\n'.
      b.buf = buf;
      b.starts[0] = 0;
      b.ends[0] = have;
      b.n = 1;
      b.firstOffset = counter.line;
      yield b;
    }
  } finally {
    // A read in flight finishes before its file is closed.
    await next?.catch(() => undefined);
    await fh.close();
  }
}

/** Batches of the lines of a byte stream (stdin). */
export async function* streamBatches(stream: AsyncIterable<Buffer | string>, batchSize: number, partition = 0): AsyncGenerator<RecordBatch> {
  let carry: Buffer = Buffer.alloc(0);
  const b = newBatch(batchSize, partition);
  const counter = { line: 0 };
  for await (const piece of stream) {
    const chunk = typeof piece === 'string' ? Buffer.from(piece) : piece;
    const buf = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
    const rest = yield* cut(buf, buf.length, b, batchSize, counter);
    carry = Buffer.from(buf.subarray(rest));
  }
  if (carry.length > 0) {
    b.buf = carry;
    b.starts[0] = 0;
    b.ends[0] = carry.length;
    b.n = 1;
    b.firstOffset = counter.line;
    yield b;
  }
}

/** A batch holding the given lines (tests, generator). */
export function batchOfLines(lines: readonly string[], partition = 0, firstOffset = 0): RecordBatch {
  const buf = Buffer.from(lines.join('\n'));
  const starts = new Uint32Array(lines.length), ends = new Uint32Array(lines.length);
  let pos = 0;
  lines.forEach((l, i) => {
    starts[i] = pos;
    pos += Buffer.byteLength(l);
    ends[i] = pos;
    pos += 1;
  });
  return { buf, starts, ends, n: lines.length, partition, firstOffset };
}
