// Receiving a consumer's responses (src/kafkajs-receive.ts): every response comes out
// whole and byte for byte, however the socket cuts the stream (inside the size field,
// inside the correlation id, several responses in one chunk); a Fetch response goes
// into one of the two buffers its connection takes turns with, any other into its own;
// and a consumer that receives so reads every record of a topic, against the broker.
import '../../src/sources/consumer-on-main';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Receiver, installReceiver } from '../../src/kafkajs-receive';
import { KafkaSource } from '../../src/sources/kafka';
import { rng } from '../helpers/random';
import { FAST, Reader, byPartition, createTopic, produce, sourceConfig, unique } from './helpers/kafka';

/** A response frame: size, correlation id, `body` bytes of a pattern of its own. */
function frame(correlationId: number, body: number, seed: number): Buffer {
  const b = Buffer.alloc(8 + body);
  b.writeInt32BE(4 + body, 0);
  b.writeInt32BE(correlationId, 4);
  for (let i = 8; i < b.length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** `stream` cut at the given positions. */
function cut(stream: Buffer, at: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const p of [...at, stream.length]) {
    out.push(stream.subarray(from, p));
    from = p;
  }
  return out;
}

test('every response comes out whole, however the stream is cut: a cut at each byte of the first 24, then random cuts', () => {
  const frames = [frame(1, 0, 1), frame(2, 5, 2), frame(3, 300, 3), frame(4, 3, 4), frame(5, 70_000, 5), frame(6, 1, 6)];
  const stream = Buffer.concat(frames);
  const rand = rng(7);
  const cuttings: number[][] = [[]];
  for (let p = 1; p <= 24; p++) cuttings.push([p]);
  for (let k = 0; k < 200; k++) {
    const n = 1 + Math.floor(rand() * 12);
    cuttings.push([...new Set(Array.from({ length: n }, () => 1 + Math.floor(rand() * (stream.length - 1))))].sort((a, b) => a - b));
  }
  // Every byte alone, too.
  cuttings.push(Array.from({ length: 400 }, (_, i) => i + 1));
  for (const at of cuttings) {
    const r = new Receiver();
    r.fetches.add(3).add(5);
    const got: Buffer[] = [];
    for (const chunk of cut(stream, at)) r.push(chunk, (f) => got.push(Buffer.from(f)));
    assert.equal(got.length, frames.length, `cut at ${at.join(',')}`);
    got.forEach((f, i) => assert.ok(f.equals(frames[i]!), `cut at ${at.join(',')}: response ${i + 1}`));
    assert.equal(r.fetches.size, 0, 'answered Fetches are forgotten');
  }
});

test('Fetch responses take turns with two buffers of the connection, kept across responses; others get buffers of their own', () => {
  const r = new Receiver();
  const delivered: Buffer[] = [];
  const feed = (f: Buffer): void => {
    // In two pieces: a response within one chunk is a view of the chunk, not gathered.
    const half = f.length >> 1;
    r.push(f.subarray(0, half), (x) => delivered.push(x));
    r.push(f.subarray(half), (x) => delivered.push(x));
  };
  const fetches = [frame(10, 5000, 1), frame(11, 4000, 2), frame(12, 6000, 3), frame(13, 3000, 4)];
  for (const [i, f] of fetches.entries()) {
    r.fetches.add(10 + i);
    feed(f);
  }
  feed(frame(99, 5000, 9)); // not a Fetch
  assert.equal(delivered.length, 5);
  const [a, b, c, d, other] = delivered as [Buffer, Buffer, Buffer, Buffer, Buffer];
  assert.ok(c.equals(fetches[2]!) && d.equals(fetches[3]!), 'the last two Fetch responses as they came');
  // The third took the first's buffer (grown, so not the same memory), the fourth the second's.
  assert.equal(d.buffer, b.buffer, 'the fourth Fetch response is in the second one\'s buffer');
  assert.notEqual(a.buffer, b.buffer);
  assert.ok(!b.equals(fetches[1]!), 'so the second one\'s bytes are gone: a Fetch response is done with two Fetches later');
  assert.notEqual(other.buffer, a.buffer);
  assert.notEqual(other.buffer, b.buffer);
  assert.notEqual(other.buffer, c.buffer);
  assert.ok(other.equals(frame(99, 5000, 9)));
});

test('a consumer whose connections receive so reads every record of a topic once, in offset order, with large and small fetches', async () => {
  assert.equal(installReceiver(), true);
  const topic = unique('weir-receive');
  await createTopic(topic, 3);
  // Values of many sizes: fetch responses of up to a megabyte per partition, cut by the socket anywhere.
  const rand = rng(3);
  const values = Array.from({ length: 20_000 }, (_, i) => JSON.stringify({ i, pad: 'x'.repeat(Math.floor(rand() * 600)) }));
  await produce(topic, values.map((value, i) => ({ key: `k-${i % 97}`, value })));
  for (const consumerThread of ['main', 'own'] as const) {
    for (const maxBytesPerPartition of [1_048_576, 5000]) {
      const source = new KafkaSource(sourceConfig(topic, unique('g'), { consumerThread, maxBytesPerPartition }), { batchSize: 512, consumer: FAST, tickIntervalMs: 200 });
      const r = new Reader(source, 512);
      try {
        await r.toEnd(60_000);
        assert.equal(source.stats.receiver, true, `${consumerThread}: the consumer's connections receive into buffers used again`);
      } finally {
        await source.close();
      }
      assert.equal(r.records.length, values.length, `${consumerThread}, fetches of ${maxBytesPerPartition} bytes`);
      const seen = new Set<string>();
      for (const [p, recs] of byPartition(r.records)) {
        recs.forEach((rec, i) => assert.equal(rec.offset, String(i), `partition ${p}`));
        for (const rec of recs) seen.add(rec.value.toString('utf8'));
      }
      assert.equal(seen.size, values.length);
      for (const v of values) assert.ok(seen.has(v), v.slice(0, 40));
    }
  }
});
