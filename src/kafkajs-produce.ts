// A Produce request encoder for kafkajs, in place of its produce/v3/request.js (which
// versions 3 to 7 of the request all encode with).
//
// kafkajs 2.2 encodes each record into an Encoder of its own (a 512-byte Buffer.alloc per
// record, each varint through Buffer.from of an array, 64-bit values through its Long),
// copies each into the batch, the batch into the request, and checksums the batch one
// byte at a time. Profiled at 20,000 events/s with 20,000 users, that encoding was most
// of the changelog thread's CPU at each checkpoint (~0.3 of a core), and a few percent
// of the main thread's for the Kafka result sink.
//
// `encodeProduce` writes the same bytes into one buffer per request, with the CRC32C
// eight bytes at a time, for requests that are not compressed and whose messages have
// no timestamp and no headers (all of Weir's); any other request goes to kafkajs's own
// encoder. `installFastProduce` puts it in place of kafkajs's module in this thread's
// module cache, as src/kafkajs-grouping.ts does, only for the kafkajs version it was
// written against and only while no module that holds the original is loaded.
// test/kafka/produce-encoder.test.ts checks both give the same bytes.
import { cachedKafkajs, kafkajsRoot, loadKafkajs, replaceKafkajs } from './kafkajs-modules';

const REPLACED = 'src/protocol/requests/produce/v3/request.js';
/** kafkajs modules that take the replaced one when they load. */
const HOLDERS = [4, 5, 6, 7].map((v) => `src/protocol/requests/produce/v${v}/request.js`);
const PRODUCE_API_KEY = 0;
const MAGIC_BYTE = 2;
const TRANSACTIONAL = 16;

interface LongLike {
  getHighBits(): number;
  getLowBits(): number;
}
interface LongClass {
  fromValue(v: unknown): LongLike;
  fromInt(v: number): LongLike;
}
interface EncoderLike {
  buf: Buffer;
  offset: number;
}

type Bytes = Buffer | string | null | undefined;
export interface ProduceMessage {
  key?: Bytes;
  value?: Bytes;
  timestamp?: unknown;
  headers?: unknown;
  [RECORDS]?: RecordRun | null;
}
// ─── Runs of change records ──────────────────────────────────────────────────
//
// A checkpoint's changelog records arrive as a change batch (src/state/batch.ts): an
// object, a key Buffer and a value view per record would be most of the changelog
// thread's work and garbage. A send carries each run of a batch's records as `count`
// messages instead: the first holds the run, the others are one shared placeholder
// (kafkajs counts a partition's messages for the idempotent producer's sequence
// numbers), and encodeProduce writes the records straight from the batch's bytes. Only
// this encoder can write them: a request it does not take is refused, not sent empty.

/** The property of a message that carries a run (null: a placeholder of the run before it). */
export const RECORDS = Symbol('weir.records');

/** Records [start, end) of a change batch's bytes, `count` of them. */
export interface RecordRun {
  readonly buf: Uint8Array;
  readonly start: number;
  readonly end: number;
  readonly count: number;
}

export interface RunMessage {
  key: null;
  value: null;
  partition: number;
  [RECORDS]: RecordRun | null;
}

/** Appends to `messages` the `run.count` messages that send `run` to `partition`. */
export function pushRun(messages: unknown[], run: RecordRun, partition: number): void {
  messages.push({ key: null, value: null, partition, [RECORDS]: run } satisfies RunMessage);
  const placeholder: RunMessage = { key: null, value: null, partition, [RECORDS]: null };
  for (let k = 1; k < run.count; k++) messages.push(placeholder);
}

/** Whether a run's messages can be sent: the encoder is in place in this thread. */
export function runsSupported(): boolean {
  return installFastProduce();
}

export interface ProduceArgs {
  acks: number;
  timeout: number;
  transactionalId?: string | null;
  producerId?: unknown;
  producerEpoch?: number;
  compression?: number;
  topicData: Array<{ topic: string; partitions: Array<{ partition: number; firstSequence?: number; messages: ProduceMessage[] }> }>;
}
export interface ProduceRequest {
  apiKey: number;
  apiVersion: number;
  apiName: string;
  expectResponse: () => boolean;
  encode: () => Promise<unknown>;
}
type RequestFactory = (args: ProduceArgs) => ProduceRequest;

// ─── CRC32C (Castagnoli), reflected, eight bytes per step ────────────────────

const CRC = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  CRC[n] = c;
}
for (let t = 1; t < 8; t++)
  for (let n = 0; n < 256; n++) {
    const prev = CRC[(t - 1) * 256 + n]!;
    CRC[t * 256 + n] = (prev >>> 8) ^ CRC[prev & 0xff]!;
  }

/** The CRC32C of bytes [start, end) of `b`, as an unsigned 32-bit number. */
export function crc32c(b: Uint8Array, start = 0, end = b.length): number {
  let crc = -1;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const lo = crc ^ (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
    const hi = b[i + 4]! | (b[i + 5]! << 8) | (b[i + 6]! << 16) | (b[i + 7]! << 24);
    crc =
      CRC[1792 + (lo & 0xff)]! ^
      CRC[1536 + ((lo >>> 8) & 0xff)]! ^
      CRC[1280 + ((lo >>> 16) & 0xff)]! ^
      CRC[1024 + (lo >>> 24)]! ^
      CRC[768 + (hi & 0xff)]! ^
      CRC[512 + ((hi >>> 8) & 0xff)]! ^
      CRC[256 + ((hi >>> 16) & 0xff)]! ^
      CRC[hi >>> 24]!;
  }
  for (; i < end; i++) crc = CRC[(crc ^ b[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

// ─── The request ─────────────────────────────────────────────────────────────

/** Bytes of value v as a zigzag varint (v a 32-bit integer). */
function varintSize(v: number): number {
  let z = ((v << 1) ^ (v >> 31)) >>> 0;
  let n = 1;
  while (z >= 0x80) {
    z >>>= 7;
    n++;
  }
  return n;
}

function writeVarint(buf: Buffer, pos: number, v: number): number {
  let z = ((v << 1) ^ (v >> 31)) >>> 0;
  while (z >= 0x80) {
    buf[pos++] = (z & 0x7f) | 0x80;
    z >>>= 7;
  }
  buf[pos++] = z;
  return pos;
}

/** Byte lengths of a request's keys and values, two per message in order (-1: null); reused. */
let lengths = new Int32Array(1024);

function byteLength(v: Bytes): number {
  if (v === null || v === undefined) return -1;
  return typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length;
}

function writeBytes(buf: Buffer, pos: number, v: Bytes, len: number): number {
  pos = writeVarint(buf, pos, len);
  if (len <= 0) return pos;
  if (typeof v === 'string') buf.write(v, pos, len, 'utf8');
  else (v as Buffer).copy(buf, pos);
  return pos + len;
}

/** Whether `encodeProduce` encodes this request (else kafkajs's own encoder must). */
export function fastEncodes(args: ProduceArgs): boolean {
  if ((args.compression ?? 0) !== 0) return false;
  for (const t of args.topicData)
    for (const p of t.partitions)
      for (const m of p.messages) {
        if (m.timestamp != null || m.headers !== undefined) return false;
        const k = m.key, v = m.value;
        if (k != null && typeof k !== 'string' && !Buffer.isBuffer(k)) return false;
        if (v != null && typeof v !== 'string' && !Buffer.isBuffer(v)) return false;
      }
  return true;
}

/**
 * The bytes of the records of the run that starts at message i of `ms`, the first at
 * offset delta i; checks that its placeholders follow it and that its records end
 * where it says.
 */
function runSize(ms: readonly ProduceMessage[], i: number): number {
  const run = ms[i]![RECORDS];
  if (run === null || run === undefined) throw new Error(`produce request: message ${i} is a placeholder of a run of change records without its run`);
  if (run.count < 1 || i + run.count > ms.length) throw new Error(`produce request: a run of ${run.count} change records from message ${i} of ${ms.length}`);
  for (let k = 1; k < run.count; k++) if (ms[i + k]![RECORDS] !== null) throw new Error(`produce request: message ${i + k} is not a placeholder of the run from message ${i}`);
  const b = run.buf;
  let size = 0;
  let p = run.start;
  for (let k = 0; k < run.count; k++) {
    if (p + 8 > run.end) throw new Error(`produce request: a run of ${run.count} change records ends at byte ${run.end}, before record ${k}`);
    const kl = u32le(b, p), v = u32le(b, p + 4);
    const vl = v - 1; // -1: a delete, whose value is null
    const body = 3 + varintSize(i + k) + varintSize(kl) + kl + varintSize(vl) + Math.max(vl, 0);
    size += varintSize(body) + body;
    p += 8 + kl + v;
  }
  if (p !== run.end) throw new Error(`produce request: a run of ${run.count} change records ends at byte ${p}, not ${run.end}`);
  return size;
}

/** Writes the records of `run` at `pos` of `buf`, the first at offset delta `first`; returns the end. */
function writeRun(buf: Buffer, pos: number, run: RecordRun, first: number): number {
  const b = run.buf;
  let p = run.start;
  for (let k = 0; k < run.count; k++) {
    const kl = u32le(b, p), v = u32le(b, p + 4);
    const vl = v - 1;
    const body = 3 + varintSize(first + k) + varintSize(kl) + kl + varintSize(vl) + Math.max(vl, 0);
    pos = writeVarint(buf, pos, body);
    buf[pos++] = 0; // attributes
    buf[pos++] = 0; // timestamp delta
    pos = writeVarint(buf, pos, first + k); // offset delta
    pos = writeVarint(buf, pos, kl);
    copyRange(b, p + 8, p + 8 + kl, buf, pos);
    pos += kl;
    pos = writeVarint(buf, pos, vl);
    if (vl > 0) copyRange(b, p + 9 + kl, p + 8 + kl + v, buf, pos);
    pos += Math.max(vl, 0);
    buf[pos++] = 0; // no headers
    p += 8 + kl + v;
  }
  return pos;
}

function u32le(b: Uint8Array, p: number): number {
  return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0;
}

/** Copies src[from, to) to dst at `at`: short ranges byte by byte (a view per copy costs more). */
function copyRange(src: Uint8Array, from: number, to: number, dst: Uint8Array, at: number): void {
  if (to - from > 64) {
    dst.set(src.subarray(from, to), at);
    return;
  }
  for (let i = from; i < to; i++) dst[at++] = src[i]!;
}

/**
 * The body of a Produce request (versions 3 to 7) as kafkajs's encoder writes it,
 * for a request fastEncodes() takes: every batch's timestamps are `now`, as kafkajs
 * gives messages without one.
 */
export function encodeProduce(args: ProduceArgs, Long: LongClass, now = Date.now()): Buffer {
  const txn = args.transactionalId ?? null;
  const producerId = Long.fromValue(args.producerId ?? Long.fromInt(-1));
  const epoch = args.producerEpoch ?? 0;
  let messages = 0;
  for (const t of args.topicData) for (const p of t.partitions) messages += p.messages.length;
  if (lengths.length < 2 * messages) lengths = new Int32Array(2 * messages + 1024);
  const lens = lengths;

  // Sizes first: the request is written into one buffer.
  let size = 2 + (txn === null ? 0 : Buffer.byteLength(txn, 'utf8')) + 2 + 4 + 4;
  let j = 0;
  for (const t of args.topicData) {
    size += 2 + Buffer.byteLength(t.topic, 'utf8') + 4;
    for (const p of t.partitions) {
      size += 4 + 4 + 12 + 9 + 40;
      const ms = p.messages;
      for (let i = 0; i < ms.length; i++, j += 2) {
        const m = ms[i]!;
        const run = m[RECORDS];
        if (run !== undefined) {
          size += runSize(ms, i);
          i += run!.count - 1;
          j += 2 * (run!.count - 1);
          continue;
        }
        const kl = (lens[j] = byteLength(m.key));
        const vl = (lens[j + 1] = byteLength(m.value));
        const body = 3 + varintSize(i) + varintSize(kl) + Math.max(kl, 0) + varintSize(vl) + Math.max(vl, 0);
        size += varintSize(body) + body;
      }
    }
  }

  const buf = Buffer.allocUnsafe(size);
  let pos = 0;
  if (txn === null) pos = buf.writeInt16BE(-1, pos);
  else {
    pos = buf.writeInt16BE(Buffer.byteLength(txn, 'utf8'), pos);
    pos += buf.write(txn, pos, 'utf8');
  }
  pos = buf.writeInt16BE(args.acks, pos);
  pos = buf.writeInt32BE(args.timeout, pos);
  pos = buf.writeInt32BE(args.topicData.length, pos);
  const nowHi = Math.floor(now / 0x100000000), nowLo = now >>> 0;
  const idHi = producerId.getHighBits(), idLo = producerId.getLowBits();
  j = 0;
  for (const t of args.topicData) {
    pos = buf.writeInt16BE(Buffer.byteLength(t.topic, 'utf8'), pos);
    pos += buf.write(t.topic, pos, 'utf8');
    pos = buf.writeInt32BE(t.partitions.length, pos);
    for (const p of t.partitions) {
      const ms = p.messages;
      pos = buf.writeInt32BE(p.partition, pos);
      const setSizeAt = pos;
      pos += 4;
      // The record batch: base offset 0, its length, leader epoch 0, magic, CRC of the rest.
      const setStart = pos;
      pos = buf.writeInt32BE(0, pos);
      pos = buf.writeInt32BE(0, pos);
      const lengthAt = pos;
      pos += 4;
      pos = buf.writeInt32BE(0, pos);
      buf[pos++] = MAGIC_BYTE;
      const crcAt = pos;
      pos += 4;
      const bodyStart = pos;
      pos = buf.writeInt16BE(txn ? TRANSACTIONAL : 0, pos);
      pos = buf.writeInt32BE(ms.length - 1, pos);
      pos = buf.writeInt32BE(nowHi, pos);
      pos = buf.writeInt32BE(nowLo | 0, pos);
      pos = buf.writeInt32BE(nowHi, pos);
      pos = buf.writeInt32BE(nowLo | 0, pos);
      pos = buf.writeInt32BE(idHi, pos);
      pos = buf.writeInt32BE(idLo, pos);
      pos = buf.writeInt16BE(epoch, pos);
      pos = buf.writeInt32BE(p.firstSequence ?? 0, pos);
      pos = buf.writeInt32BE(ms.length, pos);
      for (let i = 0; i < ms.length; i++, j += 2) {
        const m = ms[i]!;
        const run = m[RECORDS];
        if (run !== undefined) {
          pos = writeRun(buf, pos, run!, i);
          i += run!.count - 1;
          j += 2 * (run!.count - 1);
          continue;
        }
        const kl = lens[j]!, vl = lens[j + 1]!;
        const body = 3 + varintSize(i) + varintSize(kl) + Math.max(kl, 0) + varintSize(vl) + Math.max(vl, 0);
        pos = writeVarint(buf, pos, body);
        buf[pos++] = 0; // attributes
        buf[pos++] = 0; // timestamp delta
        pos = writeVarint(buf, pos, i); // offset delta
        pos = writeBytes(buf, pos, m.key, kl);
        pos = writeBytes(buf, pos, m.value, vl);
        buf[pos++] = 0; // no headers
      }
      buf.writeUInt32BE(crc32c(buf, bodyStart, pos), crcAt);
      buf.writeInt32BE(pos - lengthAt - 4, lengthAt);
      buf.writeInt32BE(pos - setStart, setSizeAt);
    }
  }
  if (pos !== size) throw new Error(`produce request: wrote ${pos} bytes, sized ${size}`);
  return buf;
}

/** The module's replacement: kafkajs's request, with encode() ours where fastEncodes(). */
function fastFactory(theirs: RequestFactory, Long: LongClass, Encoder: new () => EncoderLike): RequestFactory {
  const factory: RequestFactory = (args) => {
    if (!fastEncodes(args)) {
      if (args.topicData.some((t) => t.partitions.some((p) => p.messages.some((m) => m[RECORDS] !== undefined)))) {
        throw new Error('produce request: runs of change records need an uncompressed request without timestamps or headers');
      }
      return theirs(args);
    }
    return {
      apiKey: PRODUCE_API_KEY,
      apiVersion: 3,
      apiName: 'Produce',
      expectResponse: () => args.acks !== 0,
      encode: async () => {
        const e = new Encoder();
        e.buf = encodeProduce(args, Long);
        e.offset = e.buf.length;
        return e;
      },
    };
  };
  return factory;
}

let installed: RequestFactory | undefined;

/**
 * Puts the fast encoder in place of kafkajs's produce/v3/request.js in this thread's
 * module cache. True when it is in place (now or before); false, changing nothing,
 * when kafkajs is not the version it was written for or a module holding the
 * original is loaded.
 */
export function installFastProduce(): boolean {
  const root = kafkajsRoot();
  if (root === undefined) return false;
  const cached = cachedKafkajs(root, REPLACED);
  if (cached !== undefined && cached.exports === installed) return true;
  if (cached !== undefined || HOLDERS.some((h) => cachedKafkajs(root, h) !== undefined)) return false;
  const theirs = loadKafkajs<RequestFactory>(root, REPLACED);
  installed = fastFactory(theirs, loadKafkajs<LongClass>(root, 'src/utils/long.js'), loadKafkajs<new () => EncoderLike>(root, 'src/protocol/encoder.js'));
  replaceKafkajs(root, REPLACED, installed);
  return true;
}

installFastProduce();
