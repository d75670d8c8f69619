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
import { Delivery, NO_POSITION, type NamedSink } from '../src/sinks/delivery';
import type { RecordSink } from '../src/sinks/jsonl';

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
    results: results.map((sink, i): NamedSink<WindowResult> => ({ name: `sinks[${i}]`, sink })),
    deadLetters: { name: 'deadLetter', sink: dlq },
    retry: { ...retry, sleep: async (ms) => void waited.push(ms) },
    log: createLogger({}),
    bus,
    instanceId: 'weir-1',
    clock: () => Date.UTC(2025, 0, 1),
  });
  return { d, waited, errors };
}

const MIN = { source: { type: 'stdin' }, aggregations: [{ name: 'lat', value: 'v', window: { type: 'tumbling', sizeMs: 1000 } }] };

test('the default backoff is 100, 200, 400 ms; then each result of the write is dead-lettered with retry_count 3; other sinks still get them', async () => {
  assert.deepEqual(validateConfig(MIN).retry, { retries: 3, initialDelayMs: 100, factor: 2, maxDelayMs: 30_000 });
  const down = new TestSink<WindowResult>(() => refused());
  const up = new TestSink<WindowResult>();
  const dlq = new TestSink<DeadLetter>();
  const { d, waited, errors } = delivery([down, up], dlq);
  const rs = [result(0), result(1000)];
  const n = await d.deliver(rs, [malformed], { partition: 3, offset: '41' });
  assert.equal(n, 3);
  assert.deepEqual(waited, [100, 200, 400]);
  assert.equal(down.calls, 4);
  assert.deepEqual(up.got, rs);
  assert.deepEqual(errors, ['transient', 'transient', 'transient', 'transient']);
  assert.deepEqual(dlq.got[0], malformed, 'the events\' dead letters first');
  assert.deepEqual(dlq.got.slice(1), rs.map((r) => ({
    original_event: JSON.stringify(r),
    reason: 'undeliverable',
    error: 'sinks[0]: connect ECONNREFUSED 127.0.0.1:5432 (gave up after 4 attempts, 3 retries)',
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
  const { d, waited } = delivery([flaky], dlq, { retries: 3, initialDelayMs: 10, factor: 3, maxDelayMs: 20 });
  assert.equal(await d.deliver([result(0)], [], NO_POSITION), 0);
  assert.deepEqual(waited, [10, 20], 'maxDelayMs caps a delay');
  assert.equal(flaky.got.length, 1);
  assert.equal(dlq.calls, 0);
});

test('a refusal of some records: split into single writes, only the refused ones dead-lettered, in order, no retries', async () => {
  const picky = new TestSink<WindowResult>((rs) => (rs.some((r) => r.results.count > 3) ? new RecordsRejectedError('row refused (SQLSTATE 23514)') : undefined));
  const dlq = new TestSink<DeadLetter>();
  const { d, waited, errors } = delivery([picky], dlq);
  const rs = [result(0, 1), result(1000, 5), result(2000, 2), result(3000, 9)];
  assert.equal(await d.deliver(rs, [], NO_POSITION), 2);
  assert.deepEqual(waited, []);
  assert.deepEqual(picky.got, [rs[0], rs[2]]);
  assert.deepEqual(dlq.got.map((x) => [x.reason, x.retry_count, x.partition, x.offset, (JSON.parse(x.original_event) as WindowResult).window.start]), [
    ['undeliverable', 0, -1, '', 1000],
    ['undeliverable', 0, -1, '', 3000],
  ]);
  assert.deepEqual(errors, ['permanent', 'permanent']);
});

test('a sink that goes away while a refused write is split: the rest are dead-lettered as undeliverable with their retries', async () => {
  const sink = new TestSink<WindowResult>((rs, call) => (call === 1 ? new RecordsRejectedError('too large') : call === 2 ? undefined : refused()));
  const dlq = new TestSink<DeadLetter>();
  const { d } = delivery([sink], dlq, { retries: 1, initialDelayMs: 1, factor: 1, maxDelayMs: 1 });
  const rs = [result(0), result(1000), result(2000)];
  assert.equal(await d.deliver(rs, [], NO_POSITION), 2);
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
    const e = await d.deliver([result(0)], [malformed], NO_POSITION).then(() => assert.fail('should stop'), (x: unknown) => x);
    assert.ok(e instanceof FatalError, String(e));
    assert.equal(e.domain, domain);
    assert.equal(classify(e), 'critical');
    // retry() converts what it caught once (a foreign error becomes the cause of a WeirError).
    assert.ok(e.cause === thrown || (e.cause as WeirError).cause === thrown);
    assert.match(e.message, /sinks\[0\]/);
    assert.match(e.message, /; stopping$/);
    assert.deepEqual(waited, []);
    assert.deepEqual(errors, [], 'counted once, by the runner that stops');
    assert.equal(dlq.calls, 0);
  }
});

test('a dead-letter queue that cannot be written stops the run: after its retries (transient) or at once', async () => {
  const transient = new TestSink<DeadLetter>(() => refused());
  const a = delivery([], transient);
  const e1 = await a.d.deliver([], [malformed], NO_POSITION).catch((x: unknown) => x);
  assert.ok(e1 instanceof FatalError);
  assert.equal(classify(e1), 'critical');
  assert.deepEqual(a.waited, [100, 200, 400]);
  assert.match(e1.message, /^cannot write 1 dead letter\(s\) to the dead-letter queue, stopping: connect ECONNREFUSED .* \(gave up after 4 attempts, 3 retries\)$/);

  const full = new TestSink<DeadLetter>(() => new InputError('cannot write deadLetter file /dev/full: ENOSPC: no space left on device, write'));
  const b = delivery([], full);
  const e2 = await b.d.deliver([], [malformed], NO_POSITION).catch((x: unknown) => x);
  assert.ok(e2 instanceof FatalError);
  assert.equal(e2.domain, 'user', 'a user\'s mistake stays one: reported without a stack trace');
  assert.equal(classify(e2), 'critical');
  assert.deepEqual(b.waited, []);

  // Results a sink did not take, with nowhere to dead-letter them: the same stop.
  const c = delivery([new TestSink<WindowResult>(() => refused())], full);
  assert.ok((await c.d.deliver([result(0)], [], NO_POSITION).catch((x: unknown) => x)) instanceof FatalError);
});

test('classify: a refusal of records is permanent, a FatalError critical whatever its domain', () => {
  assert.equal(classify(new RecordsRejectedError('too large')), 'permanent');
  assert.equal(classify(new FatalError('x', new InputError('y'))), 'critical');
  assert.equal(new FatalError('x', new InputError('y')).domain, 'user');
  assert.equal(new FatalError('x', new Error('y')).domain, 'internal');
});
