// Config limits: what would make a run useless or pathological is refused at load,
// with one line naming the key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig, MAX_DURATION_MS } from '../src/config';
import { ConfigError } from '../src/errors/errors';

const agg = (over: Record<string, unknown> = {}) => ({ name: 'a', groupBy: ['data.model'], value: 'data.v', window: { type: 'tumbling', sizeMs: 1000 }, ...over });
const base = (over: Record<string, unknown> = {}) => ({ source: { type: 'stdin' }, aggregations: [agg()], ...over });

function refused(raw: unknown, want: RegExp): void {
  assert.throws(() => validateConfig(raw), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.match(e.message, want);
    assert.equal(e.message.split('\n').length, 1);
    return true;
  });
}

test('sliding windows: at most 1,000 windows per event (sizeMs / slideMs), named at window.slideMs', () => {
  const sliding = (sizeMs: number, slideMs: number) => base({ aggregations: [agg(), agg({ name: 'b', window: { type: 'sliding', sizeMs, slideMs } })] });
  refused(sliding(120_000, 7), /^config: aggregations\[1\]\.window\.slideMs: must be at least sizeMs \/ 1000 \(120 ms for sizeMs 120000\): each event belongs to sizeMs \/ slideMs windows, 17143 with slideMs 7, at most 1000$/);
  refused(sliding(120_000, 119), /aggregations\[1\]\.window\.slideMs: .* 1009 with slideMs 119/);
  refused(sliding(1001, 1), /aggregations\[1\]\.window\.slideMs/);
  // Exactly 1,000, and an uneven split rounding up to 1,000, are fine.
  assert.equal(validateConfig(sliding(120_000, 120)).aggregations[1]!.window.type, 'sliding');
  validateConfig(sliding(1001, 2));
  validateConfig(sliding(999_001, 1000));
});

test('durations: at most 365 days for window sizes, slides, gaps, lateness, out-of-orderness and the rest', () => {
  const day = 86_400_000;
  assert.equal(MAX_DURATION_MS, 365 * day);
  refused(base({ aggregations: [agg({ window: { type: 'tumbling', sizeMs: 1e300 } })] }), /^config: aggregations\[0\]\.window\.sizeMs: must be at most 365 days \(31536000000 ms\) \(got 1e\+300\)$/);
  refused(base({ aggregations: [agg({ window: { type: 'sliding', sizeMs: '400d', slideMs: '1d' } })] }), /aggregations\[0\]\.window\.sizeMs: must be at most 365 days/);
  refused(base({ aggregations: [agg({ window: { type: 'session', gapMs: '366d' } })] }), /aggregations\[0\]\.window\.gapMs: must be at most 365 days/);
  refused(base({ eventTime: { allowedLatenessMs: 1e15 } }), /eventTime\.allowedLatenessMs: must be at most 365 days/);
  refused(base({ eventTime: { maxOutOfOrdernessMs: '8760h1ms' } }), /eventTime\.maxOutOfOrdernessMs: must be at most 365 days/);
  refused(base({ checkpoint: { intervalMs: 1e20 } }), /checkpoint\.intervalMs: must be at most 365 days/);
  const ok = validateConfig(base({ aggregations: [agg({ window: { type: 'tumbling', sizeMs: '365d' } })], eventTime: { maxOutOfOrdernessMs: '365d', allowedLatenessMs: 365 * day } }));
  assert.equal(ok.aggregations[0]!.window.type === 'tumbling' && ok.aggregations[0]!.window.sizeMs, 365 * day);
  assert.equal(ok.eventTime.allowedLatenessMs, 365 * day);
});

test('sinks: at least one', () => {
  refused(base({ sinks: [] }), /^config: sinks: needs at least one sink/);
  assert.deepEqual(validateConfig(base()).sinks, [{ type: 'stdout', maxInFlightRecords: 100_000, maxInFlightBytes: 64 * 1024 * 1024 }], 'absent: the default');
});

test('field paths: dotted, with no empty segment, named by their key', () => {
  for (const bad of ['a..b', '.a', 'a.', '.', '']) {
    refused(base({ aggregations: [agg({ groupBy: ['ok', bad] })] }), new RegExp(`^config: aggregations\\[0\\]\\.groupBy\\[1\\]: must be a dotted field path like "data\\.model" \\(got ${JSON.stringify(bad).replace(/\./g, '\\.')}`));
    refused(base({ aggregations: [agg({ value: bad })] }), /^config: aggregations\[0\]\.value: must be a dotted field path/);
    refused(base({ eventTime: { field: bad } }), /^config: eventTime\.field: must be a dotted field path/);
  }
  // Any other key text is a field name JSON allows.
  validateConfig(base({ aggregations: [agg({ groupBy: ['a b.c-d', 'x'], value: 'ü.$' })], eventTime: { field: 'meta.ts' } }));
});

test('weir run: a sliding window with 17,000 windows per event exits 2 with one line naming window.slideMs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-config-'));
  const file = join(dir, 'weir.yaml');
  writeFileSync(file, `
source: { type: stdin }
aggregations:
  - { name: a, value: v, window: { type: sliding, sizeMs: 2m, slideMs: 7 } }
`);
  const r = spawnSync(process.execPath, [join(__dirname, '..', '..', 'bin', 'weir.js'), 'run', '--config', file], { encoding: 'utf8', input: '' });
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /aggregations\[0\]\.window\.slideMs: must be at least sizeMs \/ 1000/);
});

test('processing.backgroundThreads: auto, own or main, named when it is anything else', () => {
  assert.equal(validateConfig(base()).processing.backgroundThreads, 'auto', 'absent: auto');
  for (const v of ['own', 'main'] as const) assert.equal(validateConfig(base({ processing: { backgroundThreads: v } })).processing.backgroundThreads, v);
  refused(base({ processing: { backgroundThreads: 'worker' } }), /^config: processing\.backgroundThreads: .*"auto".*"own".*"main"/);
});

test('source.consumerThread: auto, own or main, named when it is anything else', () => {
  const kafka = (over: Record<string, unknown> = {}) => base({ source: { type: 'kafka', brokers: ['127.0.0.1:9092'], topic: 't', ...over } });
  const src = validateConfig(kafka()).source;
  assert.equal(src.type === 'kafka' && src.consumerThread, 'auto', 'absent: auto');
  for (const v of ['own', 'main'] as const) {
    const s = validateConfig(kafka({ consumerThread: v })).source;
    assert.equal(s.type === 'kafka' && s.consumerThread, v);
  }
  refused(kafka({ consumerThread: 'worker' }), /^config: source\.consumerThread: .*"auto".*"own".*"main"/);
});
