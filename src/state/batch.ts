// A batch of staged changes as bytes: what a checkpoint hands to a partition store in
// one piece (PartitionStore.stage), instead of one put() or delete() per key. It is
// built on the main thread straight from a change set, without an object per key, and
// crosses to the state thread (thread.ts) as one transferred ArrayBuffer.
//
// Records back to back, integers little-endian:
//
//   u32 key length | u32 value length + 1 (0: a delete) | key (UTF-8) | [0x00 | value]
//
// A put's key, a zero byte and its value are contiguous: exactly the bytes the entry's
// digest term hashes (backend.ts), so the reader hands them over as one slice.

/** An encoded batch: `length` bytes of `buffer` from 0 hold `count` records. */
export interface ChangeBatch {
  /** Shared when more than one thread reads the batch (ChangeBatchWriter's `shared`). */
  buffer: ArrayBuffer | SharedArrayBuffer;
  length: number;
  count: number;
}

const HEADER = 8;

/** Appends records to one growing buffer (its own ArrayBuffer, so it can be transferred). */
export class ChangeBatchWriter {
  /** The bytes so far; encoders write into it directly between start() and endPut()/endDelete(). */
  buf: Buffer;
  /** The next byte to write. */
  pos = 0;
  count = 0;
  private rec = 0;
  private keyEnd = 0;

  /**
   * `shared`: the batches are written in SharedArrayBuffers, which any number of threads
   * can be handed at once without a copy (a batch is not written once finished).
   */
  constructor(
    capacity = 1 << 16,
    private readonly shared = false,
  ) {
    this.buf = this.alloc(Math.max(capacity, 64));
  }

  private alloc(bytes: number): Buffer {
    return this.shared ? Buffer.from(new SharedArrayBuffer(bytes)) : Buffer.allocUnsafeSlow(bytes);
  }

  /** Room for `n` more bytes from `pos`. */
  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = this.alloc(Math.max(this.pos + n, 2 * this.buf.length));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  /** Starts a record of at most `max` bytes of key and value together; the key is written next, from `pos`. */
  start(max: number): void {
    this.reserve(HEADER + max + 1);
    this.rec = this.pos;
    this.pos += HEADER;
  }

  /** The key is written: a put's value follows (write it from `pos`, then endPut()). */
  endKey(): void {
    this.keyEnd = this.pos;
    this.buf[this.pos++] = 0;
  }

  endPut(): void {
    const b = this.buf, r = this.rec;
    b.writeUInt32LE(this.keyEnd - r - HEADER, r);
    b.writeUInt32LE(this.pos - this.keyEnd, r + 4);
    this.count++;
  }

  /** Ends a delete: the record is its key alone (written from start() to `pos`). */
  endDelete(): void {
    const b = this.buf, r = this.rec;
    b.writeUInt32LE(this.pos - r - HEADER, r);
    b.writeUInt32LE(0, r + 4);
    this.count++;
  }

  /** Appends `count` whole records, encoded elsewhere in this format. */
  append(records: Uint8Array, count: number): void {
    this.reserve(records.length);
    this.buf.set(records, this.pos);
    this.pos += records.length;
    this.count += count;
  }

  put(key: string, value: Uint8Array): void {
    this.start(3 * key.length + value.length);
    this.pos += this.buf.write(key, this.pos, 'utf8');
    this.endKey();
    this.buf.set(value, this.pos);
    this.pos += value.length;
    this.endPut();
  }

  delete(key: string): void {
    this.start(3 * key.length);
    this.pos += this.buf.write(key, this.pos, 'utf8');
    this.endDelete();
  }

  /** The batch; the writer starts empty again (on a new buffer). */
  finish(): ChangeBatch {
    const b: ChangeBatch = { buffer: this.buf.buffer, length: this.pos, count: this.count };
    this.buf = this.alloc(64);
    this.pos = 0;
    this.count = 0;
    return b;
  }
}

/**
 * Every record of `batch`, in order: its key, its value (null for a delete) and, for a
 * put, the bytes key ‖ 0x00 ‖ value. Value and hashed bytes are views of the batch's buffer.
 */
export function readChangeBatch(batch: ChangeBatch, each: (key: string, value: Buffer | null, hashed: Buffer | null) => void): void {
  const b = Buffer.from(batch.buffer, 0, batch.length);
  readChangeKeys(batch, (key, at, put) => {
    if (!put) return each(key, null, null);
    const keyLen = b.readUInt32LE(at), k = at + HEADER, end = k + keyLen + b.readUInt32LE(at + 4);
    each(key, b.subarray(k + keyLen + 1, end), b.subarray(k, end));
  });
}

/**
 * The key of every record of `batch`, in order, with where its record starts in the
 * batch's bytes (for putAt()) and whether it is a put: what staging needs, without a
 * view per record.
 */
export function readChangeKeys(batch: ChangeBatch, each: (key: string, at: number, put: boolean) => void): void {
  const b = Buffer.from(batch.buffer, 0, batch.length);
  let p = 0;
  for (let i = 0; i < batch.count; i++) {
    if (p + HEADER > b.length) throw new Error(`a change batch ends inside record ${i} of ${batch.count}`);
    const keyLen = b.readUInt32LE(p), v = b.readUInt32LE(p + 4);
    const k = p + HEADER, end = k + keyLen + v;
    if (end > b.length) throw new Error(`a change batch ends inside record ${i} of ${batch.count}`);
    each(b.toString('utf8', k, k + keyLen), p, v !== 0);
    p = end;
  }
}

/** The value of the put whose record starts at `at` of `bytes` and the bytes key ‖ 0x00 ‖ value, as views. */
export function putAt(bytes: Buffer, at: number): { value: Buffer; hashed: Buffer } {
  const keyLen = bytes.readUInt32LE(at), v = bytes.readUInt32LE(at + 4);
  const k = at + HEADER, end = k + keyLen + v;
  return { value: bytes.subarray(k + keyLen + 1, end), hashed: bytes.subarray(k, end) };
}

/** The buffers of `batches` that a postMessage can transfer (a shared one is handed over as it is). */
export function transferable(batches: readonly ChangeBatch[]): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const b of batches) if (!(b.buffer instanceof SharedArrayBuffer)) out.push(b.buffer);
  return out;
}
