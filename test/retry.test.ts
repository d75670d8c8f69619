// retry(): backoff delays, transient vs permanent, wrapping the last error; classify().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { retry, RetriesExhaustedError } from '../src/errors/retry';
import { classify, type ErrorKind } from '../src/errors/classify';
import { ConfigError, InputError, WeirError } from '../src/errors/errors';

/** A sleep that returns at once and records what it was asked to wait. */
function recordingSleep(): { sleep: (ms: number) => Promise<void>; waited: number[] } {
  const waited: number[] = [];
  return { waited, sleep: async (ms) => void waited.push(ms) };
}

const transient = (): Error => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

test('transient failures are retried after 100, 200 ms, then success', async () => {
  const { sleep, waited } = recordingSleep();
  const seen: Array<[number, number]> = [];
  const attempts: number[] = [];
  const v = await retry(
    async (attempt) => {
      attempts.push(attempt);
      if (attempt < 3) throw transient();
      return 'ok';
    },
    { sleep, onRetry: (e, attempt, delayMs) => seen.push([attempt, delayMs]) },
  );
  assert.equal(v, 'ok');
  assert.deepEqual(attempts, [1, 2, 3]);
  assert.deepEqual(waited, [100, 200]);
  assert.deepEqual(seen, [[1, 100], [2, 200]]);
});

test('exhaustion: delays 100, 200, 400, then a WeirError wrapping the last error with retryCount 3', async () => {
  const { sleep, waited } = recordingSleep();
  const errors: Error[] = [];
  const p = retry(async () => {
    const e = transient();
    errors.push(e);
    throw e;
  }, { sleep });
  const err = await p.then(
    () => assert.fail('should have failed'),
    (e: unknown) => e,
  );
  assert.deepEqual(waited, [100, 200, 400]);
  assert.equal(errors.length, 4);
  assert.ok(err instanceof RetriesExhaustedError && err instanceof WeirError);
  assert.equal(err.retryCount, 3);
  assert.equal(err.cause, errors[3], 'cause is the last error');
  assert.equal(err.domain, 'external');
  assert.equal(err.retriable, false);
  assert.match(err.message, /4 attempts/);
  assert.match(err.message, /ECONNREFUSED/);
});

test('options: retries, initialDelayMs, factor, maxDelayMs', async () => {
  const { sleep, waited } = recordingSleep();
  const err = await retry(async () => { throw new WeirError('broker unavailable', { domain: 'external', retriable: true }); }, { retries: 4, initialDelayMs: 10, factor: 3, maxDelayMs: 100, sleep }).catch((e: unknown) => e);
  assert.deepEqual(waited, [10, 30, 90, 100]);
  assert.ok(err instanceof RetriesExhaustedError);
  assert.equal(err.retryCount, 4);
});

test('maxElapsedMs: retries go on, capped at maxDelayMs, until the next one would start past it', async () => {
  const { sleep, waited } = recordingSleep();
  const err = await retry(async () => { throw transient(); }, { initialDelayMs: 100, factor: 2, maxDelayMs: 1000, maxElapsedMs: 5000, sleep }).catch((e: unknown) => e);
  // 100 + 200 + 400 + 800 + 1000 + 1000 = 3500; another 1000 would still fit (4500), a further one not.
  assert.deepEqual(waited, [100, 200, 400, 800, 1000, 1000, 1000]);
  assert.ok(err instanceof RetriesExhaustedError);
  assert.equal(err.retryCount, 7);
  assert.match(err.message, /gave up after 8 attempts over 4500 ms, 7 retries/);
});

test('permanent and critical errors are not retried', async () => {
  for (const thrown of [new ConfigError('bad'), new SyntaxError('Unexpected token'), new WeirError('corrupt state', { domain: 'internal' }), new TypeError('x is undefined')]) {
    const { sleep, waited } = recordingSleep();
    let calls = 0;
    const err = await retry(async () => {
      calls++;
      throw thrown;
    }, { sleep }).catch((e: unknown) => e);
    assert.equal(calls, 1, thrown.message);
    assert.deepEqual(waited, []);
    assert.ok(err instanceof WeirError, 'converted to a WeirError');
    assert.ok(!(err instanceof RetriesExhaustedError));
    assert.equal(classify(err), classify(thrown), `keeps its kind: ${thrown.message}`);
  }
});

test('classify table', () => {
  const kafkaRetriable = Object.assign(new Error('There is no leader for this topic-partition'), { name: 'KafkaJSProtocolError', retriable: true });
  const kafkaFinal = Object.assign(new Error('Topic authorization failed'), { name: 'KafkaJSProtocolError', retriable: false });
  const errno = (code: string) => Object.assign(new Error(code), { code });
  let arrayLength: unknown;
  try {
    new Array(-1);
  } catch (e) {
    arrayLength = e;
  }
  const WasmRuntimeError = (globalThis as unknown as { WebAssembly: { RuntimeError: new (m: string) => Error } }).WebAssembly.RuntimeError;
  const table: Array<[unknown, ErrorKind]> = [
    [new WeirError('broker unavailable', { domain: 'external', retriable: true }), 'transient'],
    [errno('ECONNREFUSED'), 'transient'],
    [errno('ECONNRESET'), 'transient'],
    [errno('ETIMEDOUT'), 'transient'],
    [errno('EPIPE'), 'transient'],
    [errno('EAI_AGAIN'), 'transient'],
    [new AggregateError([errno('ECONNREFUSED'), errno('ECONNREFUSED')]), 'transient'],
    [kafkaRetriable, 'transient'],
    [new ConfigError('bad key'), 'permanent'],
    [new InputError('input file not found'), 'permanent'],
    [new SyntaxError('Unexpected token g in JSON'), 'permanent'],
    [new WeirError('invalid event', { domain: 'user' }), 'permanent'],
    [new WeirError('corrupt checkpoint', { domain: 'internal' }), 'critical'],
    [new WeirError('gave up', { domain: 'external', retriable: false }), 'critical'],
    [kafkaFinal, 'critical'],
    [errno('ENOSPC'), 'critical'],
    [arrayLength, 'critical'],
    [new WasmRuntimeError('unreachable'), 'critical'],
    [new TypeError('x is undefined'), 'critical'],
    ['a string', 'critical'],
    [undefined, 'critical'],
  ];
  for (const [e, want] of table) assert.equal(classify(e), want, String(e));
  assert.ok(arrayLength instanceof RangeError && /Invalid array length/.test(arrayLength.message));
});
