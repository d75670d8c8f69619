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

/** Batches of the lines of a file, read to its end. Offsets are 0-based line numbers. */
export async function* fileBatches(path: string, batchSize: number, partition = 0): AsyncGenerator<RecordBatch> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError(`input file not found: ${path} (source.path)`);
    throw fileError(e, `cannot open input file ${path} (source.path)`, path);
  }
  try {
    let buf = Buffer.allocUnsafe(READ_BYTES);
    let have = 0;
    const b = newBatch(batchSize, partition);
    const counter = { line: 0 };
    for (;;) {
      if (have === buf.length) {
        // One line longer than the buffer: grow it.
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, have);
        buf = bigger;
      }
      let bytesRead: number;
      try {
        ({ bytesRead } = await fh.read(buf, have, buf.length - have, null));
      } catch (e) {
        // A directory opens for reading; it fails here (EISDIR), as a failing disk does (EIO).
        throw fileError(e, `cannot read input file ${path} (source.path)`, path);
      }
      if (bytesRead === 0) break;
      const limit = have + bytesRead;
      const rest = yield* cut(buf, limit, b, batchSize, counter);
      buf.copy(buf, 0, rest, limit);
      have = limit - rest;
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
