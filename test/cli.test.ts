// The `weir` command as a user runs it: exit codes, one-line errors, files written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');
const bin = join(root, 'bin', 'weir.js');

function weir(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, input, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'weir-cli-'));
}

function writeConfig(dir: string, body: string, name = 'weir.yaml'): string {
  const p = join(dir, name);
  writeFileSync(p, body);
  return p;
}

const GOOD = (dir: string) => `
source: { type: file, path: ${join(dir, 'events.jsonl')} }
eventTime: { field: timestamp, maxOutOfOrdernessMs: 1s, allowedLatenessMs: 2s }
aggregations:
  - name: latency
    groupBy: [data.model]
    value: data.latency_ms
    window: { type: tumbling, sizeMs: 10s }
sinks: [ { type: file, path: ${join(dir, 'results.jsonl')} } ]
deadLetter: { type: file, path: ${join(dir, 'dlq.jsonl')} }
`;

test('--help and run --help list the commands and every option', () => {
  const h = weir(['--help']);
  assert.equal(h.code, 0);
  assert.match(h.out, /weir run --config FILE/);
  const r = weir(['run', '--help']);
  assert.equal(r.code, 0);
  for (const opt of ['--config', '--batch-size', '--instance-id', '--progress', '--no-progress', '--print-config', '--help']) assert.ok(r.out.includes(opt), opt);
});

test('a config error exits 2 with one line naming the key, no stack trace', () => {
  const dir = tmp();
  const cases: Array<[string, RegExp]> = [
    [GOOD(dir).replace('sizeMs: 10s', 'sizeMs: ten'), /aggregations\[0\]\.window\.sizeMs: must be a positive/],
    [GOOD(dir).replace('groupBy:', 'groupby:'), /aggregations\[0\]: unknown key "groupby"/],
    [GOOD(dir).replace('type: tumbling', 'type: hopping'), /aggregations\[0\]\.window/],
    [GOOD(dir).replace('value: data.latency_ms', ''), /aggregations\[0\]\.value/],
    [GOOD(dir).replace('maxOutOfOrdernessMs: 1s', 'maxOutOfOrdernessMs: -5'), /eventTime\.maxOutOfOrdernessMs/],
    ['source: [1, 2', /not valid YAML/],
  ];
  for (const [body, want] of cases) {
    const r = weir(['run', '--config', writeConfig(dir, body)]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, want);
    assert.equal(r.err.trim().split('\n').length, 1, `one line: ${r.err}`);
    assert.doesNotMatch(r.err, /^\s+at \S+ \(|^\s+at \//m, "no stack trace");
  }
  const missing = weir(['run', '--config', join(dir, 'nope.yaml')]);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /config file not found: .*nope\.yaml/);
  assert.equal(weir(['run', '--bogus']).code, 2);
  assert.equal(weir(['frobnicate']).code, 2);
});

test('a missing input file is named, without a stack trace', () => {
  const dir = tmp();
  const r = weir(['run', '--config', writeConfig(dir, GOOD(dir))]);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /input file not found: .*events\.jsonl/);
  assert.doesNotMatch(r.err, /^\s+at \S+ \(|^\s+at \//m, "no stack trace");
});

test('a file run writes results and dead letters and exits 0; every line is accounted for', () => {
  const dir = tmp();
  const lines = [
    '{"timestamp": 1000, "data": {"model": "a", "latency_ms": 10}}',
    '{"timestamp": 2000, "data": {"model": "b", "latency_ms": 20}}',
    'garbage',
    '{"timestamp": 3000, "data": {"model": "a"}}',
    '{"timestamp": 25000, "data": {"model": "a", "latency_ms": 30}}',
    '{"timestamp": 1500, "data": {"model": "a", "latency_ms": 40}}',
  ];
  writeFileSync(join(dir, 'events.jsonl'), lines.join('\n') + '\n');
  const r = weir(['run', '--config', writeConfig(dir, GOOD(dir)), '--instance-id', 'p-7']);
  assert.equal(r.code, 0, r.err);
  // Not a terminal: no progress and no warning (a few bad lines are not a mistake in the config), one summary line.
  assert.match(r.err, /^done: 6 events in [\d.]+ s \(\d+ events\/s\), 3 results, 3 dead letters \(malformed 1, invalid 1, late 1\), 1 late\n$/);
  const results = readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { key: string; window: { start: number }; results: { count: number } });
  assert.deepEqual(results.map((x) => `${x.key}@${x.window.start}:${x.results.count}`).sort(), ['model=a@0:1', 'model=a@20000:1', 'model=b@0:1']);
  const dlq = readFileSync(join(dir, 'dlq.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(dlq.map((d) => [d['reason'], d['offset'], d['processor_instance']]), [['malformed', '2', 'p-7'], ['invalid', '3', 'p-7'], ['late', '5', 'p-7']]);
  assert.equal(dlq[2]!['original_event'], lines[5]);
  // 6 lines: 3 counted (one result each), 3 dead-lettered.
  assert.equal(results.reduce((a, x) => a + x.results.count, 0) + dlq.length, lines.length);
});

test('stdin source and stdout sink', () => {
  const dir = tmp();
  const cfg = writeConfig(dir, `
source: { type: stdin }
aggregations: [ { name: n, value: v, window: { type: session, gapMs: 5s } } ]
sinks: [ { type: stdout } ]
deadLetter: { type: stderr }
`);
  const r = weir(['run', '--config', cfg], '{"timestamp": 1, "v": 2}\n{"timestamp": 2, "v": 4}\n');
  assert.equal(r.code, 0, r.err);
  const out = r.out.trim().split('\n').map((l) => JSON.parse(l) as { window: unknown; results: { avg: number } });
  assert.equal(out.length, 1);
  assert.deepEqual(out[0]!.window, { start: 1, end: 5002 });
  assert.equal(out[0]!.results.avg, 3);
});

test('--print-config shows defaults and masks secrets', () => {
  const dir = tmp();
  const cfg = writeConfig(dir, `
source: { type: kafka, brokers: [127.0.0.1:9092], topic: t, sasl: { mechanism: plain, username: u, password: hunter2 } }
aggregations: [ { name: n, value: v, window: { type: tumbling, sizeMs: 1m } } ]
`);
  const r = weir(['run', '--config', cfg, '--print-config']);
  assert.equal(r.code, 0, r.err);
  assert.doesNotMatch(r.out, /hunter2/);
  const printed = JSON.parse(r.out) as { eventTime: unknown; state: { backend: string }; aggregations: Array<{ window: { sizeMs: number } }> };
  assert.deepEqual(printed.eventTime, { field: 'timestamp', maxOutOfOrdernessMs: 30000, allowedLatenessMs: 60000, idleAdvance: false });
  assert.equal(printed.state.backend, 'rocksdb');
  assert.equal(printed.aggregations[0]!.window.sizeMs, 60000);
});

test('generator source with a count: every generated event is counted or dead-lettered, then exit 0', () => {
  const dir = tmp();
  const cfg = writeConfig(dir, `
source: { type: generator, count: 3000, eventsPerSecond: 50, seed: 7, startMs: 1767225600000 }
aggregations: [ { name: lat, groupBy: [data.model], value: data.latency_ms, window: { type: tumbling, sizeMs: 10s } } ]
sinks: [ { type: file, path: ${join(dir, 'r.jsonl')} } ]
deadLetter: { type: file, path: ${join(dir, 'd.jsonl')} }
`);
  const r = weir(['run', '--config', cfg]);
  assert.equal(r.code, 0, r.err);
  const finals = new Map<string, number>();
  for (const l of readFileSync(join(dir, 'r.jsonl'), 'utf8').trim().split('\n')) {
    const x = JSON.parse(l) as { key: string; window: { start: number }; results: { count: number } };
    finals.set(`${x.key}@${x.window.start}`, x.results.count);
  }
  const dead = readFileSync(join(dir, 'd.jsonl'), 'utf8').split('\n').filter((l) => l !== '').length;
  assert.equal([...finals.values()].reduce((a, b) => a + b, 0) + dead, 3000);
});

test('weir run | head: a reader that closes the pipe early ends the run quietly with exit 0', () => {
  const dir = tmp();
  // ~20,000 results (several MB): far more than a pipe buffers, so weir is still writing when head leaves.
  const cfg = writeConfig(dir, `
source: { type: generator, count: 200000, eventsPerSecond: 100, seed: 3, startMs: 1767225600000 }
aggregations: [ { name: lat, groupBy: [data.model, data.region], value: data.latency_ms, window: { type: tumbling, sizeMs: 1s } } ]
sinks: [ { type: stdout } ]
deadLetter: { type: file, path: ${join(dir, 'd.jsonl')} }
`);
  for (const reader of ['head -n 1', 'head -c 10', 'true']) {
    const r = spawnSync('bash', ['-c', `"$0" "$1" run --config "$2" 2>"$3" | ${reader} >/dev/null; echo "\${PIPESTATUS[0]}"`, process.execPath, bin, cfg, join(dir, 'err.txt')], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '0', `weir | ${reader}: exit code`);
    assert.equal(readFileSync(join(dir, 'err.txt'), 'utf8'), '', `weir | ${reader}: stderr`);
  }
});

// ─── Never silent: a summary line always, a warning for a config that fits no event ───

test('a wrong eventTime.field: the warning names it and the field the events have, the summary shows the dead letters, exit 0', () => {
  const dir = tmp();
  const lines = Array.from({ length: 50 }, (_, i) => JSON.stringify({ timestamp: i * 1000, data: { model: 'a', latency_ms: i } }));
  writeFileSync(join(dir, 'events.jsonl'), lines.join('\n') + '\n');
  const cfg = writeConfig(dir, GOOD(dir).replace('field: timestamp', 'field: timestamps'));
  const r = weir(['run', '--config', cfg]);
  assert.equal(r.code, 0, r.err);
  const err = r.err.trim().split('\n');
  assert.equal(err.length, 2, r.err);
  assert.equal(err[0], 'weir: warning: 50 of the first 50 events were dead-lettered as invalid by aggregation latency: eventTime.field "timestamps" is in none of them (did you mean "timestamp"?)');
  assert.match(err[1]!, /^done: 50 events in [\d.]+ s \(\d+ events\/s\), 0 results, 50 dead letters \(invalid 50\), 0 late$/);
});

test('a groupBy typo: the warning suggests the path the events have', () => {
  const dir = tmp();
  const lines = Array.from({ length: 1500 }, (_, i) => JSON.stringify({ timestamp: i * 10, data: { model: `m${i % 3}`, region: 'us', latency_ms: i } }));
  writeFileSync(join(dir, 'events.jsonl'), lines.join('\n') + '\n');
  const cfg = writeConfig(dir, GOOD(dir).replace(/groupBy: \[[^\]]*\]/, 'groupBy: [data.region, data.modle]'));
  assert.match(readFileSync(cfg, 'utf8'), /data\.modle/);
  const r = weir(['run', '--config', cfg]);
  assert.equal(r.code, 0, r.err);
  const err = r.err.trim().split('\n');
  assert.equal(err.length, 2, r.err);
  assert.match(err[0]!, /^weir: warning: aggregations\[0\]\.groupBy\[1\] "data\.modle" is missing in all of the first \d+ events: they are all grouped under null \(did you mean "data\.model"\?\)$/);
  assert.match(err[1]!, /^done: 1500 events in .*, 0 dead letters, 0 late$/);
});
