// The library as a program that installed the package uses it: through its public entry
// point. `weir` resolves through package.json's exports to dist/src/index.js, the file
// a published package runs; tsconfig's paths give the compiler src/index.ts's types.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createProcessor, ConfigError, InputError, type DeadLetter, type Emitted, type ProcessorConfig, type WindowResult } from 'weir';
import { rng } from './helpers/random';
// The loader of `weir run`, for the messages it gives the same mistakes in a file.
import { loadConfig } from '../src/config';

const root = join(__dirname, '..', '..');

test('the package entry point is the built src/index.js, with its type declarations', () => {
  assert.equal(require.resolve('weir'), join(root, 'dist', 'src', 'index.js'));
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { types: string; private?: boolean; files: string[] };
  assert.ok(existsSync(join(root, pkg.types)), pkg.types);
  assert.equal(pkg.private, undefined);
  // What the entry needs at run time is published: the compiled code and the WebAssembly core.
  for (const f of ['dist/src/', 'build/core.wasm', 'bin/']) assert.ok(pkg.files.includes(f), f);
});

const aggregations: ProcessorConfig['aggregations'] = [
  { name: 'latency_metrics', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: '5m' } },
  { name: 'latency_sliding', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'sliding', sizeMs: '2m', slideMs: '30s' } },
  { name: 'user_sessions', groupBy: ['metadata.user_id'], value: 'data.tokens', window: { type: 'session', gapMs: '5m' } },
];
const eventTime = { field: 'timestamp', maxOutOfOrdernessMs: '30s', allowedLatenessMs: '60s' };

/** Results without the wall clock (emittedAt), dead letters without theirs (timestamp). */
const stripResult = ({ emittedAt: _, ...r }: WindowResult) => r;
const stripDead = ({ timestamp: _, ...d }: DeadLetter) => d;

test('a processor given the lines of a file emits what weir run emits for that file, each aggregation in the same order', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-lib-'));
  // The example events (late, invalid and malformed ones among them), a blank line and a last line without '\n'.
  const lines = readFileSync(join(root, 'examples', 'events.jsonl'), 'utf8').trimEnd().split('\n');
  lines.splice(1234, 0, '', '   ');
  const text = lines.join('\n');
  writeFileSync(join(dir, 'events.jsonl'), text);
  writeFileSync(
    join(dir, 'weir.json'),
    JSON.stringify({
      source: { type: 'file', path: join(dir, 'events.jsonl') },
      eventTime,
      aggregations,
      sinks: [{ type: 'file', path: join(dir, 'results.jsonl') }],
      deadLetter: { type: 'file', path: join(dir, 'dead.jsonl') },
    }),
  );
  const cli = spawnSync(process.execPath, [join(root, 'bin', 'weir.js'), 'run', '--config', join(dir, 'weir.json'), '--instance-id', 'lib-test'], { encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stderr);
  const read = <T>(f: string): T[] => readFileSync(join(dir, f), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as T);
  const want = { results: read<WindowResult>('results.jsonl').map(stripResult), dead: read<DeadLetter>('dead.jsonl').map(stripDead) };
  assert.ok(want.results.length > 1000 && want.dead.some((d) => d.reason === 'late') && want.dead.some((d) => d.reason === 'malformed'));

  const config: ProcessorConfig = { eventTime, aggregations, processing: { instanceId: 'lib-test' } };
  const bytes = Buffer.from(text);
  const r = rng(5);
  const ways: Record<string, (p: ReturnType<typeof createProcessor>) => void> = {
    'the whole text at once': (p) => p.push(text),
    'bytes in random chunks that end within lines': (p) => {
      for (let at = 0; at < bytes.length; ) {
        const n = 1 + Math.floor(r() * 3000);
        // A copy that is overwritten afterwards: the processor must not keep the caller's bytes.
        const chunk = Buffer.from(bytes.subarray(at, at + n));
        p.push(chunk);
        chunk.fill(0x20);
        at += n;
      }
    },
    'arrays of lines, 1 to 700 at a time': (p) => {
      for (let i = 0; i < lines.length; ) {
        const n = 1 + Math.floor(r() * 700);
        p.push(lines.slice(i, i + n));
        i += n;
      }
    },
  };
  for (const [way, feed] of Object.entries(ways)) {
    for (const batchSize of [4096, 100]) {
      const results: WindowResult[] = [], dead: DeadLetter[] = [];
      const p = createProcessor({ ...config, processing: { ...config.processing, batchSize } }, { onResult: (x) => results.push(x), onDeadLetter: (d) => dead.push(d) });
      feed(p);
      p.end();
      // Per aggregation, in firing order (a batch runs one aggregation after another, so
      // how results of different aggregations interleave depends on batch boundaries).
      for (const { name } of aggregations) {
        const of = (xs: ReadonlyArray<Omit<WindowResult, 'emittedAt'>>) => xs.filter((x) => x.name === name);
        assert.deepEqual(of(results.map(stripResult)), of(want.results), `${way}, batches of ${batchSize}: results of ${name}`);
      }
      assert.equal(results.length, want.results.length);
      assert.deepEqual(dead.map(stripDead), want.dead, `${way}, batches of ${batchSize}: dead letters`);
      assert.equal(p.stats.records, lines.length);
      assert.equal(p.watermarkMs, Infinity);
    }
  }
});

const small: ProcessorConfig = {
  eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 },
  aggregations: [{ name: 'lat', groupBy: ['model'], value: 'ms', window: { type: 'tumbling', sizeMs: 10 } }],
};

test('objects in, typed results and dead letters out through the async iterator: a malformed and a late event', async () => {
  const p = createProcessor(small, { clock: () => 42 });
  const got: Emitted[] = [];
  const consumer = (async () => {
    for await (const e of p) got.push(e);
  })();
  p.push([{ timestamp: 1, model: 'a', ms: 5 }, { timestamp: 3, model: 'a', ms: 7 }]);
  p.push(['{"timestamp": 4, "model": "a", "ms": 1']); // cut short: not a JSON object
  p.push([{ timestamp: 12, model: 'a', ms: 9 }]); // W = 12 closes [0, 10)
  p.push([{ timestamp: 2, model: 'a', ms: 100 }]); // too late for [0, 10)
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(p.watermarkMs, 12);
  p.end();
  await consumer;
  const results = got.flatMap((e) => (e.kind === 'result' ? [e.result] : []));
  const dead = got.flatMap((e) => (e.kind === 'deadLetter' ? [e.deadLetter] : []));
  assert.deepEqual(
    results.map((x) => [x.key, x.window.start, x.results.count, x.results.max, x.late, x.emittedAt]),
    [['model=a', 0, 2, 7, false, 42], ['model=a', 10, 1, 9, false, 42]],
  );
  assert.deepEqual(results[0]!.group, { model: 'a' });
  assert.deepEqual(
    dead.map((d) => [d.reason, d.aggregation, d.offset, d.partition, d.original_event, d.timestamp]),
    [
      ['malformed', undefined, '2', 0, '{"timestamp": 4, "model": "a", "ms": 1', new Date(42).toISOString()],
      ['late', 'lat', '4', 0, '{"timestamp":2,"model":"a","ms":100}', new Date(42).toISOString()],
    ],
  );
  // In order: the malformed event's dead letter came before the result that the next event fired.
  assert.deepEqual(got.map((e) => e.kind), ['deadLetter', 'result', 'deadLetter', 'result']);
  assert.deepEqual(p.stats, { records: 5, results: 2, deadLetters: 2, lateEvents: 1 });
});

test('config mistakes are ConfigErrors naming the key, with the messages of weir run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-lib-'));
  const bad: Array<[string, unknown, RegExp]> = [
    ['size', { ...small, aggregations: [{ ...small.aggregations[0]!, window: { type: 'tumbling', sizeMs: 'ten' } }] }, /^config: aggregations\[0\]\.window\.sizeMs: must be a positive/],
    ['unknown key', { ...small, aggregations: [{ ...small.aggregations[0]!, groupby: ['x'] }] }, /^config: aggregations\[0\]: unknown key "groupby"/],
    ['no aggregation', { eventTime: small.eventTime, aggregations: [] }, /^config: aggregations: needs at least one aggregation/],
    ['lateness', { ...small, eventTime: { allowedLatenessMs: -1 } }, /^config: eventTime\.allowedLatenessMs: must be a non-negative/],
    ['slide', { ...small, aggregations: [{ name: 's', value: 'v', window: { type: 'sliding', sizeMs: 10, slideMs: 20 } }] }, /^config: aggregations\[0\]\.window\.slideMs: must not exceed sizeMs/],
  ];
  for (const [what, cfg, want] of bad) {
    assert.throws(() => createProcessor(cfg as ProcessorConfig), (e: unknown) => e instanceof ConfigError && want.test(e.message), what);
    // The same mistake in a file given to weir run: the same line, naming the file instead of "config".
    const file = join(dir, `${what.replace(/ /g, '-')}.json`);
    writeFileSync(file, JSON.stringify({ ...(cfg as object), source: { type: 'stdin' } }));
    let message = '';
    try {
      createProcessor(cfg as ProcessorConfig);
    } catch (e) {
      message = (e as Error).message;
    }
    assert.throws(() => loadConfig(file), (e: unknown) => e instanceof Error && e.message === message.replace(/^config/, file), what);
    if (what === 'size') {
      // Once through the command itself (each run loads every dependency: slow on a busy machine).
      const cli = spawnSync(process.execPath, [join(root, 'bin', 'weir.js'), 'run', '--config', file], { encoding: 'utf8' });
      assert.equal(cli.status, 2, what);
      assert.equal(cli.stderr, `weir: ${message.replace(/^config/, file)}\n`, what);
    }
  }
  assert.throws(() => createProcessor({ ...small, source: { type: 'file', path: 'x' } } as unknown as ProcessorConfig), /^ConfigError: config: source: createProcessor takes its events from push\(\)/);
  assert.throws(() => createProcessor({ ...small, source: { type: 'none', path: 'x' } } as unknown as ProcessorConfig), /config: source: unknown key "path"/);
  // Leaving the source out, or none: the same processor.
  createProcessor({ ...small, source: { type: 'none' } }).end();
});

test('push after end, an event JSON cannot write, and an array within an unfinished line are refused; nothing of that push is processed', () => {
  const p = createProcessor(small, { onResult: () => undefined, onDeadLetter: () => undefined });
  const cyclic: Record<string, unknown> = { timestamp: 1 };
  cyclic['self'] = cyclic;
  assert.throws(() => p.push([{ timestamp: 1, model: 'a', ms: 1 }, cyclic]), (e: unknown) => e instanceof InputError && /events\[1\]: cannot be written as JSON/.test(e.message));
  assert.throws(() => p.push([{ timestamp: 1 }, () => 1]), /events\[1\]: cannot be written as JSON \(function\)/);
  assert.equal(p.stats.records, 0);
  p.push('{"timestamp": 1, "model": "a", "ms": 1}\n{"timestamp"');
  assert.equal(p.stats.records, 1);
  assert.throws(() => p.push([{ timestamp: 2 }]), /ends within a line/);
  p.push(': 2, "model": "a", "ms": 3}');
  p.end();
  assert.equal(p.stats.records, 2);
  assert.equal(p.stats.deadLetters, 0);
  assert.throws(() => p.push('{}\n'), (e: unknown) => e instanceof InputError && /has ended/.test(e.message));
  p.end(); // again: nothing
});

test('the example under examples/ runs against the bundled events', () => {
  const r = spawnSync(process.execPath, [join(root, 'dist', 'examples', 'library.js')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /claude-\S+ +count +\d+ +p99 [\d.]+ ms/);
  assert.match(r.stdout, /5000 records, \d+ results, dead letters: \{"late":\d+,"malformed":\d+,"invalid":\d+\}/);
});
