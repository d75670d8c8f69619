// A faster decoder of fetched records for kafkajs, used by the Kafka source's consumer
// thread (kafka-worker.ts).
//
// kafkajs 2.2 decodes every record of a fetch response into an object whose offset and
// timestamp it computes with 64-bit arithmetic on BigInts parsed from strings (its
// utils/long.js: a string parsed and one printed per field per record, a Long object
// per byte of a varlong), wraps every record's bytes in a Buffer and a Decoder, and its
// Batch parses every offset again to compare it with the fetched one. Profiled on a
// 1-partition topic, that was most of the consumer thread's time, and the garbage it
// made most of the rest.
//
// This module decodes the same record sets (magic 2 record batches, what every broker
// since Kafka 0.11 sends) with plain numbers while they are exact (offsets and
// timestamps below 2^53; above that it falls back to BigInts) into `KafkaRecord`s, and
// kafkajs's Batch compares those offsets as numbers. A KafkaRecord has every field of
// kafkajs's message; the ones Weir does not read (key, value, timestamp, headers) are
// getters that build them when read. packValues reads a value's bytes in place.
//
// kafkajs has no extension point for decoding, so `installFastDecoder` puts these in
// place of two of its modules (protocol/requests/fetch/v4/decodeMessages.js, which
// every fetch version from 4 on uses, and consumer/batch.js) in the module cache,
// before kafkajs loads them; nothing in node_modules changes. It does so only for the
// kafkajs version it was written against, and only before kafkajs's consumer was
// loaded in this thread: otherwise kafkajs decodes as before. Compressed batches are
// decompressed with kafkajs's own codecs (including ones registered through its
// CompressionCodecs); legacy message sets (magic 0 and 1) go to kafkajs's decoder.
// test/kafka/decode.test.ts checks that kafkajs's consumer gets the same messages
// from both.
import { filterAbortedMessages, type AbortedTransaction, type FetchedRecord } from '../kafkajs-aborted';
import { cachedKafkajs, kafkajsRoot, loadKafkajs, replaceKafkajs } from '../kafkajs-modules';

/** kafkajs's modules this one uses (plain JavaScript, no types of their own). */
interface KafkaDecoder {
  buffer: Buffer;
  offset: number;
  readInt32(): number;
  canReadBytes(n: number): boolean;
  readBytes(n?: number): Buffer | null;
}
type DecoderClass = new (buffer: Buffer) => KafkaDecoder;
interface Codec {
  decompress(b: Buffer): Promise<Buffer>;
}
interface LongValue {
  gte(other: LongValue): boolean;
}
interface LongClass {
  fromValue(v: string | number | bigint): LongValue;
}

const TIMESTAMP_TYPE_FLAG_MASK = 0x8;
const TRANSACTIONAL_FLAG_MASK = 0x10;
const CONTROL_FLAG_MASK = 0x20;
const COMPRESSION_CODEC_MASK = 0x07;
const LOG_APPEND_TIME = 1;
const CREATE_TIME = 0;
/** Where a record set's magic byte is (the same for every message format). */
const MAGIC_OFFSET = 16;
/** The header of a record batch: a shorter remainder is a partial batch (kafkajs's RECORD_BATCH_OVERHEAD). */
const RECORD_BATCH_OVERHEAD = 49;
/** Header fields of a record batch, from its start. */
const RECORDS_COUNT_AT = 57;
const RECORDS_AT = 61;

/** What kafkajs's record batch decoder gives each of its records (its `batchContext`). */
export interface BatchContext {
  firstOffset: string;
  firstTimestamp: string;
  partitionLeaderEpoch: number;
  inTransaction: boolean;
  isControlBatch: boolean;
  lastOffsetDelta: number;
  producerId: string;
  producerEpoch: number;
  firstSequence: number;
  maxTimestamp: string;
  timestampType: number;
  magicByte: number;
}

/**
 * One record as kafkajs's message, with key, value, timestamp and headers built when
 * read. `source[valueStart, valueEnd)` are the value's bytes (valueStart -1: null).
 */
export class KafkaRecord {
  readonly magicByte: number;
  readonly isControlRecord: boolean;
  /** The offset as a number; NaN when it is 2^53 or above (then only `offset` is exact). */
  readonly offsetNumber: number;
  private offsetText: string | undefined;

  constructor(
    readonly batchContext: BatchContext,
    readonly attributes: number,
    /** The offset: a number while exact, else its decimal text. */
    offset: number | string,
    /** Added to the batch's first timestamp. */
    private readonly timestampDelta: number | bigint,
    readonly source: Buffer,
    private readonly keyStart: number,
    private readonly keyEnd: number,
    readonly valueStart: number,
    readonly valueEnd: number,
    private readonly headersAt: number,
  ) {
    this.magicByte = batchContext.magicByte;
    this.isControlRecord = batchContext.isControlBatch;
    if (typeof offset === 'number') this.offsetNumber = offset;
    else {
      this.offsetNumber = NaN;
      this.offsetText = offset;
    }
  }

  /** As kafkajs has it, a decimal string; printed when first read (Weir reads few). */
  get offset(): string {
    return (this.offsetText ??= String(this.offsetNumber));
  }

  get key(): Buffer | null {
    return this.keyStart < 0 ? null : this.source.subarray(this.keyStart, this.keyEnd);
  }

  get value(): Buffer | null {
    return this.valueStart < 0 ? null : this.source.subarray(this.valueStart, this.valueEnd);
  }

  get timestamp(): string {
    const c = this.batchContext;
    if (c.timestampType === LOG_APPEND_TIME && c.maxTimestamp) return c.maxTimestamp;
    return (BigInt(c.firstTimestamp) + BigInt(this.timestampDelta)).toString();
  }

  /** As kafkajs gives them: key -> value, or -> [values] for a key that repeats. */
  get headers(): Record<string, Buffer | null | Array<Buffer | null>> {
    const out: Record<string, Buffer | null | Array<Buffer | null>> = {};
    const b = this.source;
    cur = this.headersAt;
    const n = varint(b);
    for (let i = 0; i < n; i++) {
      const kl = varint(b);
      const key = kl < 0 ? 'null' : b.toString('utf8', cur, cur + kl);
      if (kl > 0) cur += kl;
      const vl = varint(b);
      const value = vl < 0 ? null : b.subarray(cur, cur + vl);
      if (vl > 0) cur += vl;
      const old = out[key];
      out[key] = old === undefined ? value : Array.isArray(old) ? [...old, value] : [old, value];
    }
    return out;
  }

  toJSON(): object {
    const { magicByte, attributes, timestamp, offset, key, value, headers, isControlRecord, batchContext } = this;
    return { magicByte, attributes, timestamp, offset, key, value, headers, isControlRecord, batchContext };
  }
}

/**
 * Where the decoder reads: one position, not an object passed along, so that the
 * varint readers stay small enough to inline into the record loop.
 */
let cur = 0;

/**
 * A zigzag varint of at most 32 bits at b[cur], moving cur past it. Past the end of
 * `b` it reads garbage: callers check cur against the record's end.
 */
function varint(b: Buffer): number {
  let byte = b[cur++]!;
  if (byte < 0x80) return (byte >>> 1) ^ -(byte & 1);
  let raw = byte & 0x7f, scale = 0x80;
  do {
    byte = b[cur++]!;
    raw += (byte & 0x7f) * scale;
    scale *= 0x80;
  } while (byte >= 0x80 && scale < 2 ** 35);
  return raw % 2 === 0 ? raw / 2 : -(raw + 1) / 2;
}

/** A zigzag varlong at b[cur]: a number while exact (up to 7 bytes), else a BigInt. */
function varlong(b: Buffer): number | bigint {
  let byte = b[cur++]!;
  if (byte < 0x80) return (byte >>> 1) ^ -(byte & 1);
  let raw = byte & 0x7f, scale = 0x80;
  do {
    byte = b[cur++]!;
    raw += (byte & 0x7f) * scale;
    scale *= 0x80;
  } while (byte >= 0x80 && scale < 2 ** 49);
  if (byte < 0x80) return raw % 2 === 0 ? raw / 2 : -(raw + 1) / 2;
  // 8 bytes or more: the rest exactly.
  let big = BigInt(raw);
  let shift = 49n;
  do {
    if (cur >= b.length || shift > 63n) throw new RangeError('kafka record: invalid varlong');
    byte = b[cur++]!;
    big |= BigInt(byte & 0x7f) << shift;
    shift += 7n;
  } while (byte >= 0x80);
  big = BigInt.asUintN(64, big);
  return (big >> 1n) ^ -(big & 1n);
}

/** One record of `ctx`'s batch at b[cur], which it moves past the record (framed by its length). */
function decodeRecord(b: Buffer, ctx: BatchContext, firstOffset: number, firstOffsetBig: bigint): KafkaRecord {
  const length = varint(b);
  const start = cur;
  const end = start + length;
  if (length < 1 || end > b.length) throw new RangeError('kafka record: length past the end of the record set');
  const attributes = (b[cur++]! << 24) >> 24;
  const timestampDelta = varlong(b);
  const offsetDelta = varint(b);
  const n = firstOffset + offsetDelta;
  const offset = n <= Number.MAX_SAFE_INTEGER ? n : (firstOffsetBig + BigInt(offsetDelta)).toString();
  const kl = varint(b);
  const keyStart = kl < 0 ? -1 : cur;
  if (kl > 0) cur += kl;
  const keyEnd = cur;
  const vl = varint(b);
  const valueStart = vl < 0 ? -1 : cur;
  if (vl > 0) cur += vl;
  const valueEnd = cur;
  if (valueEnd > end) throw new RangeError('kafka record: key or value past the end of the record');
  cur = end;
  return new KafkaRecord(ctx, attributes, offset, timestampDelta, b, keyStart, keyEnd, valueStart, valueEnd, valueEnd);
}

/** The kafkajs modules the decoder needs, resolved from its package directory. */
interface Kafkajs {
  Decoder: DecoderClass;
  Long: LongClass;
  lookupCodecByAttributes: (attributes: number) => Codec | null;
  messageSetDecoder: (decoder: KafkaDecoder, size: number) => unknown[];
}

function kafkajsParts(root: string): Kafkajs {
  const src = (p: string): unknown => loadKafkajs(root, `src/${p}`);
  return {
    Decoder: src('protocol/decoder') as DecoderClass,
    Long: src('utils/long') as LongClass,
    lookupCodecByAttributes: (src('protocol/message/compression') as { lookupCodecByAttributes: Kafkajs['lookupCodecByAttributes'] }).lookupCodecByAttributes,
    messageSetDecoder: src('protocol/messageSet/decoder') as Kafkajs['messageSetDecoder'],
  };
}

/**
 * kafkajs's decodeMessages (protocol/requests/fetch/v4/decodeMessages.js): the
 * messages of one partition's record set, read from a fetch response's decoder.
 */
function makeDecodeMessages(k: Kafkajs): (decoder: KafkaDecoder) => Promise<unknown[]> {
  return async (decoder) => {
    const size = decoder.readInt32();
    if (size <= 0 || !decoder.canReadBytes(size)) return [];
    const b = decoder.readBytes(size)!;
    if (b.length <= MAGIC_OFFSET || b.readInt8(MAGIC_OFFSET) !== 2) return k.messageSetDecoder(new k.Decoder(b), size);
    const records: KafkaRecord[] = [];
    let pos = 0;
    // The last batch may be cut off by the fetch's size limit: it comes again in the next fetch.
    while (b.length - pos >= RECORD_BATCH_OVERHEAD) {
      const length = b.readInt32BE(pos + 8);
      const end = pos + 12 + length;
      if (end > b.length) break;
      const firstOffsetBig = b.readBigInt64BE(pos);
      const attributes = b.readInt16BE(pos + 21);
      const ctx: BatchContext = {
        firstOffset: firstOffsetBig.toString(),
        firstTimestamp: b.readBigInt64BE(pos + 27).toString(),
        partitionLeaderEpoch: b.readInt32BE(pos + 12),
        inTransaction: (attributes & TRANSACTIONAL_FLAG_MASK) > 0,
        isControlBatch: (attributes & CONTROL_FLAG_MASK) > 0,
        lastOffsetDelta: b.readInt32BE(pos + 23),
        producerId: b.readBigInt64BE(pos + 43).toString(),
        producerEpoch: b.readInt16BE(pos + 51),
        firstSequence: b.readInt32BE(pos + 53),
        maxTimestamp: b.readBigInt64BE(pos + 35).toString(),
        timestampType: (attributes & TIMESTAMP_TYPE_FLAG_MASK) > 0 ? LOG_APPEND_TIME : CREATE_TIME,
        magicByte: b.readInt8(pos + MAGIC_OFFSET),
      };
      // Exact as a number, or NaN (then every offset is computed with BigInts).
      const firstOffset = firstOffsetBig <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(firstOffsetBig) : NaN;
      const count = b.readInt32BE(pos + RECORDS_COUNT_AT);
      const codec = (attributes & COMPRESSION_CODEC_MASK) === 0 ? null : k.lookupCodecByAttributes(attributes);
      if (count > 0) {
        let src = b.subarray(0, end);
        let from = pos + RECORDS_AT;
        if (codec !== null) {
          src = await codec.decompress(b.subarray(from, end));
          from = 0;
        }
        // No await in this loop: `cur` is this call's alone.
        cur = from;
        for (let i = 0; i < count; i++) records.push(decodeRecord(src, ctx, firstOffset, firstOffsetBig));
      }
      pos = end;
    }
    return records;
  };
}

/**
 * kafkajs's Batch (consumer/batch.js) with the same fields and methods, whose
 * constructor compares KafkaRecords' offsets with the fetched one as numbers.
 */
function makeBatch(k: Kafkajs, original: { prototype: object }): unknown {
  function Batch(this: Record<string, unknown>, topic: string, fetchedOffset: string, partitionData: { partition: number; highWatermark: string; abortedTransactions: unknown; messages: Array<{ offset: string; isControlRecord: boolean }> }): void {
    this['fetchedOffset'] = fetchedOffset;
    const { abortedTransactions, messages } = partitionData;
    this['topic'] = topic;
    this['partition'] = partitionData.partition;
    this['highWatermark'] = partitionData.highWatermark;
    this['rawMessages'] = messages;
    // A fetch may return records before the fetched offset (a compressed batch is sent whole): they are not ours.
    const fetched = Number(fetchedOffset);
    let long: LongValue | undefined;
    const within = messages.filter((m) => {
      if (m instanceof KafkaRecord && m.offsetNumber === m.offsetNumber && fetched <= Number.MAX_SAFE_INTEGER) return m.offsetNumber >= fetched;
      long ??= k.Long.fromValue(fetchedOffset);
      return k.Long.fromValue(m.offset).gte(long);
    });
    this['messagesWithinOffset'] = within;
    // Neither aborted messages nor control records are for the consumer.
    this['messages'] = filterAbortedMessages({ messages: within as unknown as FetchedRecord[], abortedTransactions: abortedTransactions as AbortedTransaction[] | null }).filter((m) => !m.isControlRecord);
  }
  Batch.prototype = original.prototype;
  return Batch;
}

/** kafkajs modules that, once loaded, hold on to the ones replaced: installing after them would change nothing. */
const HOLDERS = ['src/protocol/requests/fetch/v4/decodeMessages.js', 'src/consumer/batch.js', 'src/consumer/consumerGroup.js'];

/** The decodeMessages this module put in place on this thread, if it did. */
let installed: unknown;

/**
 * Puts the decoder in place of kafkajs's in this thread's module cache. True when it is
 * in place (now or before); false, changing nothing, when kafkajs is not the version
 * it was written for or when its consumer was already loaded (kafkajs then decodes as
 * it always did).
 */
export function installFastDecoder(): boolean {
  if (fastDecoderInPlace()) return true;
  const root = kafkajsRoot();
  if (root === undefined) return false;
  if (HOLDERS.some((h) => cachedKafkajs(root, h) !== undefined)) return false;
  const k = kafkajsParts(root);
  replaceKafkajs(root, HOLDERS[1]!, makeBatch(k, loadKafkajs<{ prototype: object }>(root, HOLDERS[1]!)));
  installed = makeDecodeMessages(k);
  replaceKafkajs(root, HOLDERS[0]!, installed);
  return true;
}

/** Whether kafkajs decodes fetched records with this module's decoder on this thread. */
export function fastDecoderInPlace(): boolean {
  if (installed === undefined) return false;
  const root = kafkajsRoot();
  return root !== undefined && cachedKafkajs(root, HOLDERS[0]!)?.exports === installed;
}
