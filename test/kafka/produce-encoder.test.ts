// Weir's Produce request encoder (src/kafkajs-produce.ts) writes the bytes kafkajs's own
// writes, and Weir's producers load it in place of kafkajs's; a real broker takes what
// it writes (it checks each batch's CRC) and gives the same messages back.
// First: it must come before anything loads kafkajs's producer.
import { crc32c, encodeProduce, fastEncodes, installFastProduce, pushRun, RECORDS, type ProduceArgs, type ProduceMessage, type ProduceRequest } from '../../src/kafkajs-produce';
import { ChangeBatchWriter, readChangeBatch } from '../../src/state/batch';
import '../../src/sinks/kafka';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Module from 'node:module';
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { rng } from '../helpers/random';
import { kafkajsFile, originalKafkajs } from './helpers/original';

const load = Module.createRequire(__filename);
const path = kafkajsFile('src/protocol/requests/produce/v3/request.js');
const Long = load(kafkajsFile('src/utils/long.js')) as { fromValue(v: unknown): unknown; fromInt(v: number): unknown };
const theirCrc = load(kafkajsFile('src/protocol/recordBatch/crc32C/index.js')) as (b: Buffer) => number;

/** kafkajs's own module. */
const original = (): ((args: ProduceArgs) => ProduceRequest) => originalKafkajs('src/protocol/requests/produce/v3/request.js');

/** The body request.encode() gives, with the clock stopped at `now` (kafkajs stamps messages without a timestamp). */
async function bytesOf(req: ProduceRequest, now: number): Promise<Buffer> {
  const real = Date.now;
  Date.now = () => now;
  try {
    return ((await req.encode()) as { buffer: Buffer }).buffer;
  } finally {
    Date.now = real;
  }
}

const CHARS = [...'aZ0:é€😀\n"'];
const text = (r: () => number, n: number): string => Array.from({ length: n }, () => CHARS[Math.floor(r() * CHARS.length)]).join('');

function randomRequest(r: () => number): ProduceArgs {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const sizes = [0, 1, 5, 63, 64, 127, 128, 300, 8191, 8192, 20_000];
  const bytes = (): Buffer | string | null | undefined => {
    const kind = pick(['buffer', 'string', 'null', 'undefined', 'empty']);
    if (kind === 'null') return null;
    if (kind === 'undefined') return undefined;
    if (kind === 'empty') return r() < 0.5 ? '' : Buffer.alloc(0);
    const n = pick(sizes);
    return kind === 'buffer' ? randomBytes(n) : text(r, n);
  };
  const transactional = r() < 0.5;
  return {
    acks: pick([-1, 1, 0]),
    timeout: pick([30_000, 5_000]),
    transactionalId: transactional ? `weir-${text(r, 8)}` : undefined,
    producerId: pick([undefined, Long.fromInt(-1), Long.fromValue(4_000_000_123), Long.fromValue(7)]),
    producerEpoch: pick([undefined, 0, 3, 32_000]),
    topicData: Array.from({ length: 1 + Math.floor(r() * 3) }, (_, t) => ({
      topic: `topic-${t}-${text(r, 3)}`,
      partitions: Array.from({ length: 1 + Math.floor(r() * 3) }, (_, p) => ({
        partition: p * 7,
        firstSequence: pick([undefined, 0, 12345, 2_000_000_000]),
        messages: Array.from({ length: pick([1, 2, 64, 65, 200]) }, () => ({ key: bytes(), value: bytes() })),
      })),
    })),
  };
}

test("kafkajs's producer uses Weir's Produce encoder once Weir's Kafka sink is loaded", () => {
  assert.equal(installFastProduce(), true);
  assert.notEqual(load(path), original());
  assert.equal(typeof load(path), 'function');
});

test('CRC32C: the same as kafkajs, for any length and start', () => {
  const r = rng(7);
  for (let n = 0; n < 300; n++) {
    const b = randomBytes(n + 3);
    const start = Math.floor(r() * 3);
    assert.equal(crc32c(b, start, start + n), theirCrc(b.subarray(start, start + n)), `length ${n} from ${start}`);
  }
  // The check value of CRC-32C.
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
});

test('the same request bytes as kafkajs: keys and values null, empty, strings and buffers, varints of 1 to 3 bytes, transactions, several topics and partitions', async () => {
  const theirs = original();
  const ours = load(path) as (args: ProduceArgs) => ProduceRequest;
  const r = rng(42);
  for (let i = 0; i < 150; i++) {
    const args = randomRequest(r);
    assert.ok(fastEncodes(args));
    const now = 1_767_225_600_000 + i * 1_000_003;
    const want = await bytesOf(theirs(args), now);
    assert.deepEqual(await bytesOf(ours(args), now), want, `request ${i}`);
    assert.deepEqual(encodeProduce(args, Long as never, now), want, `request ${i}, encodeProduce`);
    const a = ours(args), b = theirs(args);
    assert.deepEqual([a.apiKey, a.apiVersion, a.apiName, a.expectResponse()], [b.apiKey, b.apiVersion, b.apiName, b.expectResponse()]);
  }
});

test("requests it does not encode (compressed, timestamps, headers) are kafkajs's own", async () => {
  const theirs = original();
  const ours = load(path) as (args: ProduceArgs) => ProduceRequest;
  const base = (m: Record<string, unknown>, compression = 0): ProduceArgs => ({ acks: -1, timeout: 30_000, compression, topicData: [{ topic: 't', partitions: [{ partition: 0, messages: [{ key: 'k', value: 'v' }, { key: null, value: 'w', ...m }] }] }] });
  for (const args of [base({ timestamp: '1767225600123' }), base({ headers: { h: 'x' } }), base({}, 1)]) {
    assert.equal(fastEncodes(args), false);
    const now = 1_767_225_600_000;
    assert.deepEqual(await bytesOf(ours(args), now), await bytesOf(theirs(args), now));
  }
});

/** A change batch of `n` records (puts with values across the varint sizes, empty ones, deletes), as a writer makes it. */
function changeBatch(r: () => number, n: number): { buf: Uint8Array; count: number; plain: ProduceMessage[] } {
  const w = new ChangeBatchWriter(64);
  const sizes = [0, 1, 62, 63, 64, 65, 200, 8190, 8191, 8192, 9000];
  for (let i = 0; i < n; i++) {
    const key = `agg:${text(r, 1 + Math.floor(r() * 12))}:${i}`;
    if (r() < 0.2) w.delete(key);
    else w.put(key, randomBytes(sizes[Math.floor(r() * sizes.length)]!));
  }
  const b = w.finish();
  const plain: ProduceMessage[] = [];
  readChangeBatch(b, (key, value) => plain.push({ key: Buffer.from(key, 'utf8'), value: value === null ? null : Buffer.from(value) }));
  return { buf: new Uint8Array(b.buffer, 0, b.length), count: b.count, plain };
}

/** The byte offset of record `i` of a change batch. */
function recordAt(buf: Uint8Array, i: number): number {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.length);
  let p = 0;
  for (let k = 0; k < i; k++) p += 8 + v.getUint32(p, true) + v.getUint32(p + 4, true);
  return p;
}

test('runs of change records: the same request bytes as their records sent one message each, among other messages', () => {
  const r = rng(11);
  for (let i = 0; i < 60; i++) {
    const { buf, count, plain } = changeBatch(r, 1 + Math.floor(r() * 150));
    // The batch cut into runs at random records, with plain messages between some of them.
    const runs: unknown[] = [];
    const want: ProduceMessage[] = [];
    for (let from = 0; from < count; ) {
      const to = Math.min(count, from + 1 + Math.floor(r() * 60));
      pushRun(runs, { buf, start: recordAt(buf, from), end: recordAt(buf, to), count: to - from }, 5);
      want.push(...plain.slice(from, to));
      if (r() < 0.3) {
        const m = { key: text(r, 3), value: randomBytes(Math.floor(r() * 100)) };
        runs.push({ ...m, partition: 5 });
        want.push(m);
      }
      from = to;
    }
    const args = (messages: ProduceMessage[]): ProduceArgs => ({
      acks: -1,
      timeout: 30_000,
      transactionalId: 'weir-g:t:5',
      producerId: Long.fromValue(4_000_000_123),
      producerEpoch: 3,
      topicData: [{ topic: 'weir-changelog', partitions: [{ partition: 5, firstSequence: 77, messages }] }],
    });
    const runArgs = args(runs as ProduceMessage[]);
    assert.equal(runArgs.topicData[0]!.partitions[0]!.messages.length, want.length, 'a message per record');
    assert.ok(fastEncodes(runArgs));
    const now = 1_767_225_600_000 + i;
    assert.deepEqual(encodeProduce(runArgs, Long as never, now), encodeProduce(args(want), Long as never, now), `request ${i}`);
  }
});

test('runs of change records: refused when broken or when the request is not one this encoder writes', () => {
  const r = rng(12);
  const { buf, count } = changeBatch(r, 10);
  const base = (messages: unknown[], compression = 0): ProduceArgs => ({ acks: -1, timeout: 30_000, compression, topicData: [{ topic: 't', partitions: [{ partition: 0, messages: messages as ProduceMessage[] }] }] });
  const whole = { buf, start: 0, end: buf.length, count };
  const ok: unknown[] = [];
  pushRun(ok, whole, 0);
  encodeProduce(base(ok), Long as never);
  // A placeholder without its run, a run missing placeholders, a run whose records end elsewhere.
  const noHead = ok.slice(1);
  assert.throws(() => encodeProduce(base(noHead), Long as never), /placeholder of a run of change records without its run/);
  assert.throws(() => encodeProduce(base(ok.slice(0, count - 1)), Long as never), /a run of 10 change records from message 0 of 9/);
  const short: unknown[] = [];
  pushRun(short, { ...whole, end: recordAt(buf, 9) }, 0);
  assert.throws(() => encodeProduce(base(short), Long as never), /a run of 10 change records ends at byte \d+, before record 9/);
  const mixed = [...ok];
  mixed[3] = { key: 'k', value: 'v' };
  assert.throws(() => encodeProduce(base(mixed), Long as never), /message 3 is not a placeholder/);
  // kafkajs's encoder would write them as empty records: refused instead.
  const ours = load(path) as (args: ProduceArgs) => ProduceRequest;
  assert.throws(() => ours(base(ok, 1)), /runs of change records need an uncompressed request/);
  const long: unknown[] = [];
  pushRun(long, { ...whole, count: 9 }, 0);
  assert.throws(() => encodeProduce(base(long), Long as never), /a run of 9 change records ends at byte \d+, not \d+/);
  assert.equal((ok[0] as ProduceMessage)[RECORDS], whole);
});

test('a real broker takes the requests it writes and gives the messages back, idempotent and in a transaction', async () => {
  const kafka = new Kafka({ clientId: 'weir-produce-test', brokers: [process.env['WEIR_TEST_KAFKA'] ?? '127.0.0.1:9092'], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topic = `weir-test-produce-${Date.now()}-${randomBytes(4).toString('hex')}`;
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  const r = rng(3);
  const sent: Array<{ key: Buffer | string | null; value: Buffer | string }> = [];
  for (let i = 0; i < 400; i++) sent.push({ key: i % 9 === 0 ? null : `k${i % 37}-${text(r, 3)}`, value: i % 5 === 0 ? randomBytes(i * 50) : text(r, i % 70) });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const txn = kafka.producer({ idempotent: true, maxInFlightRequests: 1, transactionalId: `${topic}-txn` });
  const consumer = kafka.consumer({ groupId: `${topic}-g`, readUncommitted: false });
  try {
    await producer.connect();
    await producer.send({ topic, acks: -1, messages: sent.slice(0, 200) });
    await txn.connect();
    const t = await txn.transaction();
    await t.send({ topic, acks: -1, messages: sent.slice(200) });
    await t.commit();
    const got = new Map<string, Buffer[]>();
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    let n = 0;
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          eachMessage: async ({ message }) => {
            const k = message.key === null ? '\u0000null' : message.key.toString('utf8');
            got.set(k, [...(got.get(k) ?? []), message.value!]);
            if (++n === sent.length) resolve();
          },
        })
        .catch(reject);
    });
    // Per key, the values in the order sent (one key stays in one partition).
    const want = new Map<string, Buffer[]>();
    for (const m of sent) {
      const k = m.key === null ? '\u0000null' : typeof m.key === 'string' ? m.key : m.key.toString('utf8');
      want.set(k, [...(want.get(k) ?? []), Buffer.from(m.value)]);
    }
    // Null keys are spread over both partitions: their values, in any order.
    const sorted = (xs: Buffer[] | undefined): string[] => (xs ?? []).map((b) => b.toString('hex')).sort();
    assert.deepEqual(sorted(got.get('\u0000null')), sorted(want.get('\u0000null')));
    got.delete('\u0000null');
    want.delete('\u0000null');
    assert.deepEqual(got, want);
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    await txn.disconnect().catch(() => undefined);
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  }
});
