// The live status page in a real headless Chromium (Debian's `chromium`, installed by
// scripts/ensure-apt.sh when missing) against a running Kafka run: it shows the
// run's partitions, and a second load after more events shows more events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BROKERS, createTopic, produce, unique } from './helpers/kafka';
import { kafkaRunConfig, sleep, spawnWeir, writeConfig } from './helpers/weir';
import { freePort } from '../helpers/ports';

const ROOT = join(__dirname, '..', '..', '..');
const CHROMIUM = '/usr/bin/chromium';

/** The page's DOM after its script ran for a few (virtual) seconds. */
function dumpDom(url: string): string {
  const profile = mkdtempSync(join(tmpdir(), 'weir-chromium-'));
  const r = spawnSync(
    CHROMIUM,
    ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', `--user-data-dir=${profile}`, '--virtual-time-budget=3000', '--dump-dom', url],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(r.status, 0, `chromium failed: ${r.stderr}`);
  return r.stdout;
}

const text = (dom: string, id: string): string => new RegExp(`id="${id}">([^<]*)<`).exec(dom)?.[1] ?? '';
/** The partition numbers in the first column of the partitions table. */
function partitionRows(dom: string): string[] {
  const body = /<table id="partitions">.*?<tbody>(.*?)<\/tbody>/s.exec(dom)?.[1] ?? '';
  return [...body.matchAll(/<tr><td>([^<]*)<\/td>/g)].map((m) => m[1]!);
}

async function statusOf(port: number): Promise<{ totals: { records: number } } | undefined> {
  try {
    return (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { totals: { records: number } };
  } catch {
    return undefined;
  }
}

async function waitForRecords(port: number, n: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await statusOf(port))?.totals.records !== n) {
    assert.ok(Date.now() < deadline, `/status never showed ${n} records (last: ${JSON.stringify(await statusOf(port))})`);
    await sleep(200);
  }
}

test('the status page in headless Chromium shows the partitions of a Kafka run and updates as events arrive', async () => {
  const install = spawnSync('bash', [join(ROOT, 'scripts', 'ensure-apt.sh'), CHROMIUM, 'chromium'], { encoding: 'utf8', timeout: 9 * 60_000 });
  assert.equal(install.status, 0, `scripts/ensure-apt.sh chromium failed:\n${install.stdout}${install.stderr}`);
  const dir = mkdtempSync(join(tmpdir(), 'weir-page-'));
  const topic = unique('page');
  await createTopic(topic, 3);
  const now = Date.now();
  const batch = (from: number, n: number) =>
    Array.from({ length: n }, (_, i) => ({ partition: (from + i) % 3, value: JSON.stringify({ timestamp: now + (from + i) * 10, data: { model: `m${i % 3}`, latency_ms: i } }) }));
  await produce(topic, batch(0, 300));
  const port = await freePort();
  const cfg = kafkaRunConfig(dir, topic, unique('g'), {
    source: { type: 'kafka', brokers: BROKERS, topic, groupId: unique('g'), bounded: false, fromBeginning: true, idleTimeoutMs: 60_000, sessionTimeoutMs: 6000 },
    aggregations: [{ name: 'lat', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 60_000 } }],
    metrics: { host: '127.0.0.1', port },
  });
  const run = spawnWeir(writeConfig(dir, cfg));
  try {
    await waitForRecords(port, 300);
    const first = dumpDom(`http://127.0.0.1:${port}/`);
    assert.deepEqual(partitionRows(first), ['0', '1', '2'], first);
    assert.equal(text(first, 'records'), '300');
    assert.match(first, /W is [0-9:.]+\. The window \[/, 'the aggregation says what its next window waits for');

    await produce(topic, batch(300, 450));
    await waitForRecords(port, 750);
    const second = dumpDom(`http://127.0.0.1:${port}/`);
    assert.equal(text(second, 'records'), '750');
    assert.notEqual(text(first, 'records'), text(second, 'records'));
  } finally {
    run.child.kill('SIGTERM');
    const exit = await run.exit;
    assert.equal(exit.code, 0, exit.stderr);
  }
});
