// Group keys (SEMANTICS.md, Results): each value in `key` has '%', ':' and '='
// percent-encoded, so different groups never share a key or a window; `group` keeps
// the values as they are; a missing field and the string "null" still share `null`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runLines, testConfig, finals } from './helpers/run';
import { runReference, finalResults, type RefAggregation } from './reference/reference';
import { WindowOperator } from '../src/pipeline/operator';
import { batchOfLines } from '../src/sources/lines';
import type { WindowResult } from '../src/pipeline/types';

const eventTime = { field: 'timestamp', maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 };
const aggs: RefAggregation[] = [{ name: 'lat', groupBy: ['data.model', 'data.region'], value: 'v', window: { type: 'tumbling', sizeMs: 1000 } }];
const cfg = testConfig({ eventTime, aggregations: aggs });

const ev = (v: number, data: Record<string, unknown>): string => JSON.stringify({ timestamp: 5, v, data });
const LINES = [
  // Unencoded, these two would both be "model=m:region=a:region=b".
  ev(1, { model: 'm:region=a', region: 'b' }),
  ev(2, { model: 'm', region: 'a:region=b' }),
  // '%' itself, and text that looks like an escape.
  ev(3, { model: '50%', region: '%3A' }),
  ev(4, { model: '50%25', region: ':' }),
  ev(5, { model: '=', region: '' }),
  // A missing field and the string "null" share the key null.
  ev(6, { model: 'null' }),
  ev(7, { model: null }),
  ev(8, {}),
  // Escaped in the JSON text: the same values as plain ones.
  '{"timestamp":5,"v":9,"data":{"model":"m\\u003aregion\\u003da","region":"b"}}',
];

const WANT: Array<[string, Record<string, string>, number]> = [
  ['model=m%3Aregion%3Da:region=b', { model: 'm:region=a', region: 'b' }, 1 + 9],
  ['model=m:region=a%3Aregion%3Db', { model: 'm', region: 'a:region=b' }, 2],
  ['model=50%25:region=%253A', { model: '50%', region: '%3A' }, 3],
  ['model=50%2525:region=%3A', { model: '50%25', region: ':' }, 4],
  ['model=%3D:region=', { model: '=', region: '' }, 5],
  ['model=null:region=null', { model: 'null', region: 'null' }, 6 + 7 + 8],
];

function byKey(results: Iterable<WindowResult>): Array<[string, Record<string, string>, number]> {
  return [...results].map((r): [string, Record<string, string>, number] => [r.key, r.group, r.results.sum]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

for (const decoder of ['scan', 'json'] as const)
  test(`values with ':', '=' and '%' are percent-encoded in key, kept in group, and never share a window (${decoder} decoder)`, () => {
    for (const batch of [1, 3, 100]) {
      const got = runLines(cfg, LINES, batch, decoder);
      assert.deepEqual(byKey(finals(got.results).values()), [...WANT].sort((a, b) => (a[0] < b[0] ? -1 : 1)), `batch ${batch}`);
      // The plain reference agrees window by window.
      const ref = finalResults(runReference(LINES, eventTime, aggs).emissions);
      assert.deepEqual(byKey(finals(got.results).values()).map(([k, g]) => [k, g]), ref.map((e) => [e.key, e.group]).sort((a, b) => (a[0]! < b[0]! ? -1 : 1)));
    }
  });

test('restore: state saved with encoded keys restores; state saved under unencoded keys is still read', () => {
  const op = new WindowOperator(cfg, { clock: () => 0 });
  op.trackChanges();
  op.process(batchOfLines(LINES.slice(0, 2)));
  const { puts } = op.drainChanges();
  assert.deepEqual(puts.map(([k]) => k).sort(), ['lat:model=m%3Aregion%3Da:region=b:0_1000', 'lat:model=m:region=a%3Aregion%3Db:0_1000']);
  for (const legacy of [false, true]) {
    // Unencoded, the two windows had one key: old state holds only one of them.
    const entries = legacy ? puts.filter(([k]) => k.startsWith('lat:model=m%3A')).map(([k, v]): [string, Buffer] => [decodeURIComponent(k), v]) : puts;
    const b = new WindowOperator(cfg, { clock: () => 0 });
    b.trackChanges();
    b.restore(entries, op.watermarks.current);
    b.process(batchOfLines([LINES[8]!]));
    const out = b.finish();
    const want: Array<[string, Record<string, string>, number]> = [['model=m%3Aregion%3Da:region=b', { model: 'm:region=a', region: 'b' }, 10]];
    if (!legacy) want.push(['model=m:region=a%3Aregion%3Db', { model: 'm', region: 'a:region=b' }, 2]);
    assert.deepEqual(byKey(out.results.toObjects()), want);
    // From the next drain on, the state is under the encoded keys only.
    const { puts: again, deletes } = b.drainChanges();
    if (legacy) {
      assert.deepEqual(deletes, ['lat:model=m:region=a:region=b:0_1000']);
      assert.deepEqual(again, []);
    }
  }
});

test('weir run: values with separators give one result per group, as the reference', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-keys-'));
  writeFileSync(join(dir, 'events.jsonl'), LINES.join('\n') + '\n');
  const config = join(dir, 'weir.yaml');
  writeFileSync(config, `
source: { type: file, path: ${join(dir, 'events.jsonl')} }
eventTime: { field: timestamp, maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 }
aggregations:
  - { name: lat, groupBy: [data.model, data.region], value: v, window: { type: tumbling, sizeMs: 1000 } }
sinks: [ { type: file, path: ${join(dir, 'results.jsonl')} } ]
deadLetter: { type: file, path: ${join(dir, 'dlq.jsonl')} }
`);
  const r = spawnSync(process.execPath, [join(__dirname, '..', '..', 'bin', 'weir.js'), 'run', '--config', config, '--no-progress'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const results = readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as WindowResult);
  assert.deepEqual(byKey(results), [...WANT].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
  const ref = finalResults(runReference(LINES, eventTime, aggs).emissions);
  assert.deepEqual(byKey(results).map(([k, g, sum]) => [k, g, sum]), ref.map((e) => [e.key, e.group, e.values.reduce((a, x) => a + x, 0)]).sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : 1)));
});
