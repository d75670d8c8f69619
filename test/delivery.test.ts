// Delivery's decisions, branch by branch, with sinks that fail the way real ones do
// (errno errors, WeirErrors with the sinks' own flags); the same decisions against
// real PostgreSQL, files and Kafka are in errors-e2e.test.ts and kafka/errors.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../src/config';
import { classify } from '../src/errors/classify';
import { FatalError, InputError, RecordsRejectedError, WeirError } from '../src/errors/errors';
import { createLogger } from '../src/log';
import { Instrumentation } from '../src/metrics/events';
import type { DeadLetter, WindowResult } from '../src/pipeline/types';
import { Delivery, NO_POSITION, type InputPosition, type NamedSink } from '../src/sinks/delivery';
import type { RecordSink } from '../src/sinks/jsonl';
import { ResultBatch, ResultEncoder } from '../src/pipeline/results';
import { WasmCore, Layout } from '../src/core/wasm';
import { KeyRegistry } from '../src/pipeline/keys';

/** A result sink that hands the results of each write to `inner` as objects. */
function asResults(inner: RecordSink<WindowResult>): RecordSink<ResultBatch> {
  return { write: (bs) => inner.write(bs.flatMap((b) => b.toObjects())), close: () => inner.close() };
}

const batch = (rs: readonly WindowResult[]): ResultBatch => ResultBatch.fromObjects(rs);

const refused = (): Error => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

/** A sink that keeps what it took and fails as `fail` says (per call, 1-based). */
class TestSink<T> implements RecordSink<T> {
  readonly got: T[] = [];
  calls = 0;
  constructor(private readonly fail: (records: readonly T[], call: number) => Error | undefined = () => undefined) {}
  async write(records: readonly T[]): Promise<void> {
    const e = this.fail(records, ++this.calls);
    if (e !== undefined) throw e;
    this.got.push(...records);
  }
  async close(): Promise<void> {}
}

function result(start: number, count = 1): WindowResult {
  return {
    name: 'lat', key: 'model=m', group: { model: 'm' }, window: { start, end: start + 1000 },
    results: { count, sum: count, avg: 1, min: 1, max: 1, p50: 1, p95: 1, p99: 1, stddev: 0 }, late: false, emittedAt: 0,
  };
}

const malformed: DeadLetter = {
  original_event: 'x', reason: 'malformed', error: 'not valid JSON', retry_count: 0, timestamp: '2025-01-01T00:00:00.000Z',
  processor_instance: 'p', partition: 0, offset: '7',
};

function delivery(results: Array<RecordSink<WindowResult>>, dlq: RecordSink<DeadLetter>, retry = validateConfig(MIN).retry) {
  const waited: number[] = [];
  const errors: string[] = [];
  const bus = new Instrumentation();
  bus.on('error', (e) => errors.push(e.kind));
  const d = new Delivery({
    results: results.map((sink, i): NamedSink<ResultBatch> => ({ name: `sinks[${i}]`, sink: asResults(sink) })),
    deadLetters: { name: 'deadLetter', sink: dlq },
    retry: { ...retry, sleep: async (ms) => void waited.push(ms) },
    log: createLogger({}),
    bus,
    instanceId: 'weir-1',
    clock: () => Date.UTC(2025, 0, 1),
  });
  return { d, waited, errors };
}

/** Hands one step to the sinks and waits until they hold it; the dead letters written by then. */
async function send(d: Delivery, rs: readonly WindowResult[], dls: readonly DeadLetter[], at: InputPosition): Promise<number> {
  const before = d.deadLettersWritten;
  await d.deliver([batch(rs)], dls, at);
  await d.flush();
  return d.deadLettersWritten - before;
}

const THREE = { retries: 3, initialDelayMs: 100, factor: 2, maxDelayMs: 5_000, maxElapsedMs: 300_000 };

const MIN = { source: { type: 'stdin' }, aggregations: [{ name: 'lat', value: 'v', window: { type: 'tumbling', sizeMs: 1000 } }] };

test('the default backoff starts 100, 200, 400 ms, doubles up to 5 s and goes on for 5 minutes; then the results are dead-lettered', async () => {
  assert.deepEqual(validateConfig(MIN).retry, { initialDelayMs: 100, factor: 2, maxDelayMs: 5_000, maxElapsedMs: 300_000 });
  const down = new TestSink<WindowResult>(() => refused());
  const dlq = new TestSink<DeadLetter>();
  const { d, waited } = delivery([down], dlq);
  assert.equal(await send(d, [result(0)], [], NO_POSITION), 1);
  assert.deepEqual(waited.slice(0, 8), [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
  const total = waited.reduce((a, b) => a + b, 0);
  assert.ok(total <= 300_000 && total + 5000 > 300_000, `retried for ${total} ms`);
  assert.equal(dlq.got[0]!.retry_count, waited.length);
});

test('an outage shorter than maxElapsedMs (a 5 s database failover) loses nothing', async () => {
  let down = 0;
  const failover = new TestSink<WindowResult>(() => (down < 5_000 ? refused() : undefined));
  const dlq = new TestSink<DeadLetter>();
  const d = new Delivery({
    results: [{ name: 'sinks[0]', sink: asResults(failover) }],
    deadLetters: { name: 'deadLetter', sink: dlq },
    retry: { ...validateConfig(MIN).retry, sleep: async (ms) => void (down += ms) },
    log: createLogger({}),
    bus: new Instrumentation(),
    instanceId: 'weir-1',
  });
  assert.equal(await send(d, [result(0), result(1000)], [], NO_POSITION), 0);
  assert.equal(failover.got.length, 2);
  assert.equal(dlq.calls, 0);
});

test('retries of transient failures: after them each result of the write is dead-lettered with retry_count 3; other sinks still get them', async () => {
  const down = new TestSink<WindowResult>(() => refused());
  const up = new TestSink<WindowResult>();
  const dlq = new TestSink<DeadLetter>();
  const { d, waited, errors } = delivery([down, up], dlq, THREE);
  const rs = [result(0), result(1000)];
  const n = await send(d, rs, [malformed], { partition: 3, offset: '41' });
  assert.equal(n, 3);
  assert.deepEqual(waited, [100, 200, 400]);
  assert.equal(down.calls, 4);
  assert.deepEqual(up.got, rs);
  assert.deepEqual(errors, ['transient', 'transient', 'transient', 'transient']);
  assert.deepEqual(dlq.got[0], malformed, 'the events\' dead letters first');
  assert.deepEqual(dlq.got.slice(1), rs.map((r) => ({
    original_event: JSON.stringify(r),
    reason: 'undeliverable',
    error: 'sinks[0]: connect ECONNREFUSED 127.0.0.1:5432 (gave up after 4 attempts over 700 ms, 3 retries)',
    aggregation: 'lat',
    retry_count: 3,
    timestamp: '2025-01-01T00:00:00.000Z',
    processor_instance: 'weir-1',
    partition: 3,
    offset: '41',
    sink: 'sinks[0]',
  })));
});

test('a transient failure that passes: delivered, nothing dead-lettered', async () => {
  const flaky = new TestSink<WindowResult>((_, call) => (call < 3 ? refused() : undefined));
  const dlq = new TestSink<DeadLetter>();
  const { d, waited } = delivery([flaky], dlq, { retries: 3, initialDelayMs: 10, factor: 3, maxDelayMs: 20, maxElapsedMs: 1000 });
  assert.equal(await send(d, [result(0)], [], NO_POSITION), 0);
  assert.deepEqual(waited, [10, 20], 'maxDelayMs caps a delay');
  assert.equal(flaky.got.length, 1);
  assert.equal(dlq.calls, 0);
});

test('a refusal of some records: split into single writes, only the refused ones dead-lettered, in order, no retries', async () => {
  const picky = new TestSink<WindowResult>((rs) => (rs.some((r) => r.results.count > 3) ? new RecordsRejectedError('row refused (SQLSTATE 23514)') : undefined));
  const dlq = new TestSink<DeadLetter>();
  const { d, waited, errors } = delivery([picky], dlq);
  const rs = [result(0, 1), result(1000, 5), result(2000, 2), result(3000, 9)];
  assert.equal(await send(d, rs, [], NO_POSITION), 2);
  assert.deepEqual(waited, []);
  assert.deepEqual(picky.got, [rs[0], rs[2]]);
  assert.deepEqual(dlq.got.map((x) => [x.reason, x.retry_count, x.partition, x.offset, (JSON.parse(x.original_event) as WindowResult).window.start]), [
    ['undeliverable', 0, -1, '', 1000],
    ['undeliverable', 0, -1, '', 3000],
  ]);
  assert.deepEqual(errors, ['permanent', 'permanent']);
});

test('a refused write of several steps, one result each: each result is tried alone, only the refused one is dead-lettered', async () => {
  let open: () => void = () => {};
  const gate = new Promise<void>((r) => (open = r));
  const picky = new TestSink<WindowResult>((rs) => (rs.some((r) => r.results.count > 3) ? new RecordsRejectedError('row refused (SQLSTATE 23514)') : undefined));
  const slowThenPicky: RecordSink<WindowResult> = { write: async (rs) => (await gate, picky.write(rs)), close: async () => {} };
  const dlq = new TestSink<DeadLetter>();
  const { d } = delivery([slowThenPicky], dlq);
  // The first step's write waits at the gate; the next two queue up and go as one write.
  const rs = [result(0, 1), result(1000, 2), result(2000, 9)];
  for (const r of rs) await d.deliver([batch([r])], [], NO_POSITION);
  open();
  await d.flush();
  assert.deepEqual(picky.got, [rs[0], rs[1]]);
  assert.deepEqual(dlq.got.map((x) => (JSON.parse(x.original_event) as WindowResult).window.start), [2000]);
});

test('a sink that goes away while a refused write is split: the rest are dead-lettered as undeliverable with their retries', async () => {
  const sink = new TestSink<WindowResult>((rs, call) => (call === 1 ? new RecordsRejectedError('too large') : call === 2 ? undefined : refused()));
  const dlq = new TestSink<DeadLetter>();
  const { d } = delivery([sink], dlq, { retries: 1, initialDelayMs: 1, factor: 1, maxDelayMs: 1, maxElapsedMs: 1000 });
  const rs = [result(0), result(1000), result(2000)];
  assert.equal(await send(d, rs, [], NO_POSITION), 2);
  assert.deepEqual(sink.got, [rs[0]]);
  assert.deepEqual(dlq.got.map((x) => x.retry_count), [1, 1]);
});

test('a result sink that fails otherwise is unusable: FatalError naming it, critical, nothing dead-lettered', async () => {
  for (const [thrown, domain] of [
    [new InputError('cannot write sinks[0] results file /x: ENOSPC: no space left on device, write'), 'user'],
    [new WeirError('postgres result sink (table "t"): permission denied (SQLSTATE 42501)', { domain: 'external' }), 'external'],
    [new TypeError('x is undefined'), 'internal'],
  ] as const) {
    const sink = new TestSink<WindowResult>(() => thrown);
    const dlq = new TestSink<DeadLetter>();
    const { d, waited, errors } = delivery([sink], dlq);
    const e = await send(d, [result(0)], [malformed], NO_POSITION).then(() => assert.fail('should stop'), (x: unknown) => x);
    assert.ok(e instanceof FatalError, String(e));
    assert.equal(e.domain, domain);
    assert.equal(classify(e), 'critical');
    // retry() converts what it caught once (a foreign error becomes the cause of a WeirError).
    assert.ok(e.cause === thrown || (e.cause as WeirError).cause === thrown);
    assert.match(e.message, /sinks\[0\]/);
    assert.match(e.message, /; stopping$/);
    assert.deepEqual(waited, []);
    assert.deepEqual(errors, [], 'counted once, by the runner that stops');
    // The step's own dead letters still went to the dead-letter queue: nothing of the failed sink's.
    assert.deepEqual(dlq.got, [malformed]);
  }
});

test('a dead-letter queue that cannot be written stops the run: after its retries (transient) or at once', async () => {
  const transient = new TestSink<DeadLetter>(() => refused());
  const a = delivery([], transient, THREE);
  const e1 = await send(a.d, [], [malformed], NO_POSITION).catch((x: unknown) => x);
  assert.ok(e1 instanceof FatalError);
  assert.equal(classify(e1), 'critical');
  assert.deepEqual(a.waited, [100, 200, 400]);
  assert.match(e1.message, /^cannot write 1 dead letter\(s\) to the dead-letter queue, stopping: connect ECONNREFUSED .* \(gave up after 4 attempts over 700 ms, 3 retries\)$/);

  const full = new TestSink<DeadLetter>(() => new InputError('cannot write deadLetter file /dev/full: ENOSPC: no space left on device, write'));
  const b = delivery([], full);
  const e2 = await send(b.d, [], [malformed], NO_POSITION).catch((x: unknown) => x);
  assert.ok(e2 instanceof FatalError);
  assert.equal(e2.domain, 'user', 'a user\'s mistake stays one: reported without a stack trace');
  assert.equal(classify(e2), 'critical');
  assert.deepEqual(b.waited, []);

  // Results a sink did not take, with nowhere to dead-letter them: the same stop.
  const c = delivery([new TestSink<WindowResult>(() => refused())], full, THREE);
  assert.ok((await send(c.d, [result(0)], [], NO_POSITION).catch((x: unknown) => x)) instanceof FatalError);
});

test('classify: a refusal of records is permanent, a FatalError critical whatever its domain', () => {
  assert.equal(classify(new RecordsRejectedError('too large')), 'permanent');
  assert.equal(classify(new FatalError('x', new InputError('y'))), 'critical');
  assert.equal(new FatalError('x', new InputError('y')).domain, 'user');
  assert.equal(new FatalError('x', new Error('y')).domain, 'internal');
});

/** A sink whose writes wait until the test lets them through. */
class GatedSink<T> implements RecordSink<T> {
  readonly got: T[] = [];
  writes = 0;
  private open: (() => void) | undefined;
  private gate: Promise<void>;
  constructor() {
    this.gate = new Promise((r) => (this.open = r));
  }
  release(): void {
    this.open?.();
  }
  async write(records: readonly T[]): Promise<void> {
    this.writes++;
    await this.gate;
    this.got.push(...records);
  }
  async close(): Promise<void> {}
}

test('a slow sink holds the loop back only once its queue is full; nothing is lost or reordered; the queue level is reported', async () => {
  const slow = new GatedSink<WindowResult>();
  const fast = new TestSink<WindowResult>();
  const dlq = new TestSink<DeadLetter>();
  const levels: number[] = [];
  const bus = new Instrumentation();
  bus.on('sink.queue', (e) => e.sink === 'sinks[0]' && levels.push(e.records));
  const d = new Delivery({
    results: [{ name: 'sinks[0]', sink: asResults(slow), limits: { maxRecords: 10, maxWriteRecords: 4 } }, { name: 'sinks[1]', sink: asResults(fast) }],
    deadLetters: { name: 'deadLetter', sink: dlq },
    retry: THREE,
    log: createLogger({}),
    bus,
    instanceId: 'weir-1',
  });
  const sent: WindowResult[] = [];
  // Four steps of two results fit (8 < 10): deliver() returns at once each time.
  for (let i = 0; i < 4; i++) {
    const rs = [result(i * 2000, i + 1), result(i * 2000 + 1000, i + 1)];
    sent.push(...rs);
    await d.deliver([batch(rs)], [], NO_POSITION);
  }
  assert.equal(slow.writes, 1, 'the first write is in flight, the rest queued behind it');
  assert.deepEqual(fast.got, sent, 'a slow sink does not hold the others back');
  // The fifth step fills the queue (10): deliver() waits until the sink takes some.
  const rs = [result(8000, 5), result(9000, 5)];
  sent.push(...rs);
  let returned = false;
  const p = d.deliver([batch(rs)], [], NO_POSITION).then(() => (returned = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(returned, false, 'back pressure: deliver() waits while the queue is full');
  slow.release();
  await p;
  await d.flush();
  assert.deepEqual(slow.got, sent, 'in order, nothing lost');
  assert.equal(Math.max(...levels), 10);
  assert.equal(levels[levels.length - 1], 0);
});

test('flushUpTo waits for the steps up to a barrier only', async () => {
  const slow = new GatedSink<WindowResult>();
  const d = new Delivery({
    results: [{ name: 'sinks[0]', sink: asResults(slow), limits: { maxWriteRecords: 1 } }],
    deadLetters: { name: 'deadLetter', sink: new TestSink<DeadLetter>() },
    retry: THREE,
    log: createLogger({}),
    bus: new Instrumentation(),
    instanceId: 'weir-1',
  });
  const before = await d.deliver([batch([result(0)])], [], NO_POSITION);
  assert.equal(d.barrier, before);
  let flushed = false;
  const f = d.flushUpTo(before).then(() => (flushed = true));
  await d.deliver([batch([result(1000)])], [], NO_POSITION);
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(flushed, false);
  slow.release();
  await f;
  assert.ok(slow.got.length >= 1);
  await d.flush();
  assert.equal(slow.got.length, 2);
});

test("the encoder's batches go to every sink intact and their memory is reused only after the slowest sink wrote them", async () => {
  const core = new WasmCore(16, [{ kind: 0, sizeMs: 1000, slideMs: 1000, latenessMs: 0 }]);
  const reg = new KeyRegistry(['data.model']);
  // 8 KiB slabs: a few steps each, so memory goes round many times while writes are in flight.
  const enc = new ResultEncoder(core, ['lat'], [reg], 8192);
  const { RES, RES_BYTES } = Layout;
  /** A sink that reads each batch's lines only after `delayMs` (a socket or disk taking its time). */
  class LateReader implements RecordSink<ResultBatch> {
    readonly lines: string[] = [];
    constructor(private readonly delayMs: () => number) {}
    async write(bs: readonly ResultBatch[]): Promise<void> {
      await new Promise((r) => setTimeout(r, this.delayMs()));
      for (const b of bs) for (let i = 0; i < b.n; i++) this.lines.push(b.textOf(i));
    }
    async close(): Promise<void> {}
  }
  let seed = 7;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const fast = new LateReader(() => 0), slow = new LateReader(() => 1 + rand() * 4);
  const d = new Delivery({
    results: [
      { name: 'sinks[0]', sink: fast },
      // A queue of a few steps: the loop runs ahead of the slow sink by that much.
      { name: 'sinks[1]', sink: slow, limits: { maxRecords: 40 } },
    ],
    deadLetters: { name: 'deadLetter', sink: new TestSink<DeadLetter>() },
    retry: validateConfig(MIN).retry,
    log: createLogger({}),
    bus: new Instrumentation(),
    instanceId: 'weir-1',
  });
  const want: string[] = [];
  const slabs = new Set<ArrayBufferLike>();
  for (let step = 0; step < 300; step++) {
    const n = 1 + (step % 7);
    const base = core.alloc(n * RES_BYTES);
    for (let k = 0; k < n; k++) {
      const w = (base >>> 2) + k * (RES_BYTES / 4), f = (base >>> 3) + k * (RES_BYTES / 8);
      core.words()[w + RES.AGG / 4] = 0;
      core.words()[w + RES.KEY / 4] = reg.idOf([`m${k}`]);
      core.words()[w + RES.FLAGS / 4] = 0;
      const nums = [step * 1000, step * 1000 + 1000, k + 1, step + k / 10, 1.5, 0.1 * k, step, 1, 2, 3, 0.25];
      [RES.START, RES.END, RES.COUNT, RES.SUM, RES.AVG, RES.MIN, RES.MAX, RES.P50, RES.P95, RES.P99, RES.STDDEV].forEach((o, j) => (core.doubles()[f + o / 8] = nums[j]!));
    }
    const b = enc.encode({ count: n, base }, step);
    core.free(base);
    for (let i = 0; i < b.n; i++) want.push(b.textOf(i));
    slabs.add(b.json.buffer);
    await d.deliver([b], [], { partition: 0, offset: String(step) });
    b.release(); // as the loop does: the queues hold it now
  }
  await d.flush();
  assert.deepEqual(fast.lines, want);
  assert.deepEqual(slow.lines, want);
  // The test means something only if slabs were reused while writes were in flight.
  assert.ok(slabs.size < 40, `${slabs.size} slabs for 300 steps: memory was not reused`);
});
