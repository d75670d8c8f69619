// How the consumer thread packs kafkajs's messages into a RecordBatch (packValues,
// packOffsets in src/sources/kafka-worker.ts), over every layout of values it may
// meet: views into one fetch buffer (the usual case), separate buffers, out of order,
// far apart, nulls and empty values. No broker: the inputs are built here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { packOffsets, packValues } from '../../src/sources/kafka-worker';

type Msg = { value: Buffer | null };

/** What a RecordBatch built from the pack yields for record k, as bytes. */
function unpack(p: ReturnType<typeof packValues>, n: number): Array<Buffer> {
  const buf = Buffer.from(p.memory, 0, p.bytes);
  const out: Buffer[] = [];
  let prevEnd = 0;
  for (let k = 0; k < n; k++) {
    const s = p.starts[k]!, e = p.ends[k]!;
    assert.ok(prevEnd <= s && s <= e && e <= p.bytes, `record ${k}: [${s}, ${e}) after ${prevEnd}, ${p.bytes} bytes`);
    prevEnd = e;
    out.push(Buffer.from(buf.subarray(s, e)));
  }
  return out;
}

const expected = (msgs: readonly Msg[]): Buffer[] => msgs.map((m) => (m.value === null ? Buffer.alloc(0) : Buffer.from(m.value)));

/** Values laid into one buffer in order, `gaps[k]` bytes of framing (0xEE) before value k, as kafkajs's views. */
function views(values: ReadonlyArray<string | null>, gaps: readonly number[]): Msg[] {
  const parts: Buffer[] = [];
  const at: Array<[number, number] | null> = [];
  let pos = 0;
  values.forEach((v, k) => {
    parts.push(Buffer.alloc(gaps[k] ?? 0, 0xee));
    pos += gaps[k] ?? 0;
    if (v === null) return at.push(null);
    const b = Buffer.from(v);
    parts.push(b);
    at.push([pos, b.length]);
    pos += b.length;
  });
  parts.push(Buffer.alloc(7, 0xee));
  // Like kafkajs's response buffer: its own ArrayBuffer, values at offsets inside it.
  const whole = Buffer.concat(parts, pos + 7);
  return at.map((x) => ({ value: x === null ? null : whole.subarray(x[0], x[0] + x[1]) }));
}

test('views into one buffer with framing between them: copied as one run, each record exact', () => {
  const values = ['{"a":1}', 'é✓ multi-byte', null, '', '{"b":"' + 'x'.repeat(300) + '"}', '"last"'];
  const msgs = views(values, [5, 12, 3, 0, 40, 9]);
  const p = packValues(msgs, 0, msgs.length, undefined);
  assert.deepEqual(unpack(p, msgs.length), expected(msgs));
  // One run: from the first value's start to the last one's end, framing in between included.
  const first = msgs[0]!.value!, last = msgs.at(-1)!.value!;
  assert.equal(p.bytes, last.byteOffset + last.length - first.byteOffset);
  // A sub-range [i, j) of the messages.
  const q = packValues(msgs, 1, 5, undefined);
  assert.deepEqual(unpack(q, 4), expected(msgs.slice(1, 5)));
});

test('values that do not share one buffer, out of order, or far apart: copied run by run, each record exact', () => {
  const separate: Msg[] = ['one', 'two', null, 'three'].map((v) => ({ value: v === null ? null : Buffer.from(v) }));
  assert.deepEqual(unpack(packValues(separate, 0, 4, undefined), 4), expected(separate));

  const inOrder = views(['a1', 'a2', 'a3', 'a4'], [3, 3, 3, 3]);
  const reversed = [...inOrder].reverse();
  const pr = packValues(reversed, 0, 4, undefined);
  assert.deepEqual(unpack(pr, 4), expected(reversed));
  assert.equal(pr.bytes, 8, 'out of order: each value on its own, no framing');

  // A large key or header between two values: not carried along.
  const apart = views(['near', 'far', 'farther'], [2, 10_000, 4]);
  const pa = packValues(apart, 0, 3, undefined);
  assert.deepEqual(unpack(pa, 3), expected(apart));
  assert.ok(pa.bytes < 100, `${pa.bytes} bytes`);

  // Two fetch buffers interleaved (two decompressed record batches, say).
  const x = views(['x0', 'x1', 'x2'], [4, 4, 4]), y = views(['y0', 'y1', 'y2'], [4, 4, 4]);
  const mixed = [x[0]!, x[1]!, y[0]!, y[1]!, x[2]!, y[2]!];
  assert.deepEqual(unpack(packValues(mixed, 0, 6, undefined), 6), expected(mixed));
});

test('only nulls and empty values: an empty buffer, every record empty', () => {
  const msgs: Msg[] = [{ value: null }, { value: Buffer.alloc(0) }, { value: null }];
  const p = packValues(msgs, 0, 3, undefined);
  assert.equal(p.bytes, 0);
  assert.deepEqual(unpack(p, 3), expected(msgs));
});

test('a buffer given back is filled again when large enough (old bytes past the batch are not records); a smaller one is not used', () => {
  const msgs = views(['{"a":1}', '{"b":2}', '{"c":3}'], [6, 6, 6]);
  const spare = new ArrayBuffer(1 << 16);
  new Uint8Array(spare).fill(0x41);
  const p = packValues(msgs, 0, 3, spare);
  assert.equal(p.memory, spare);
  assert.deepEqual(unpack(p, 3), expected(msgs));
  const small = new ArrayBuffer(4);
  const q = packValues(msgs, 0, 3, small);
  assert.notEqual(q.memory, small);
  assert.deepEqual(unpack(q, 3), expected(msgs));
});

test('property: any mix of layouts packs to exactly the values, in order', () => {
  const value = fc.option(fc.string({ unit: 'grapheme', maxLength: 40 }), { nil: null, freq: 6 });
  const group = fc.record({ values: fc.array(value, { minLength: 1, maxLength: 12 }), gaps: fc.array(fc.nat(700), { minLength: 12, maxLength: 12 }), separate: fc.boolean() });
  fc.assert(
    fc.property(fc.array(group, { minLength: 1, maxLength: 5 }), fc.boolean(), fc.nat(64), (groups, shuffle, spareKb) => {
      let msgs: Msg[] = groups.flatMap((g) => (g.separate ? g.values.map((v) => ({ value: v === null ? null : Buffer.from(v) })) : views(g.values, g.gaps)));
      if (shuffle) msgs = msgs.map((m, k) => [m, (k * 7919) % 13] as const).sort((a, b) => a[1] - b[1]).map(([m]) => m);
      const p = packValues(msgs, 0, msgs.length, spareKb === 0 ? undefined : new ArrayBuffer(spareKb * 1024));
      assert.deepEqual(unpack(p, msgs.length), expected(msgs));
    }),
    { numRuns: 300 },
  );
});

test('offsets: without gaps only the first (record k is first + k); with gaps all of them, exact; 2^53 and above refused', () => {
  const of = (xs: string[]) => xs.map((offset) => ({ offset }));
  assert.deepEqual(packOffsets(of(['7', '8', '9', '10']), 0, 4, () => 'p'), { firstOffset: 7, offsets: undefined });
  assert.deepEqual(packOffsets(of(['7', '8', '9', '10']), 1, 3, () => 'p'), { firstOffset: 8, offsets: undefined });
  const gaps = packOffsets(of(['3', '4', '6', '9']), 0, 4, () => 'p');
  assert.equal(gaps.firstOffset, 3);
  assert.deepEqual([...gaps.offsets!], [3, 4, 6, 9]);
  const top = String(Number.MAX_SAFE_INTEGER);
  assert.deepEqual(packOffsets(of([String(Number.MAX_SAFE_INTEGER - 1), top]), 0, 2, () => 'p'), { firstOffset: Number.MAX_SAFE_INTEGER - 1, offsets: undefined });
  assert.throws(() => packOffsets(of([top, '9007199254740992']), 0, 2, () => 'partition 3 of topic t'), /partition 3 of topic t: offset 9007199254740992 is 2\^53 or above/);
});
