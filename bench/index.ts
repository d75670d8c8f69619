// `npm run bench`: every figure measured side by side in one run; also written to bench/results.json.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchCore } from './core';
import { benchE2e } from './e2e';
import { benchKafka, printKafka } from './kafka';
import { benchCheckpoint, printCheckpoint } from './checkpoint';
import { benchEncode, printEncode } from './encode';
import { benchSoak, printSoak } from './soak';

async function main(): Promise<void> {
  const started = new Date().toISOString();
  const which = new Set(process.argv.slice(2));
  // The soak runs for minutes: only when named.
  const all = which.size === 0;
  const report: Record<string, unknown> = { started, node: process.version };

  if (all || which.has('core')) {
    console.log('# Kernel: ns per event for one aggregation (lower is better; median of 3 rounds, order rotated)\n');
    const figs = await benchCore();
    report['core'] = figs;
    const byWindow = new Map<string, Map<string, number>>();
    for (const f of figs) (byWindow.get(f.window) ?? byWindow.set(f.window, new Map()).get(f.window)!).set(f.impl, f.nsPerEvent);
    console.log('| window | wasm core | plain TypeScript | sketches-js + JS | sketches-js / wasm |');
    console.log('| --- | --- | --- | --- | --- |');
    for (const [w, m] of byWindow) {
      const wasm = m.get('wasm core')!, ts = m.get('plain TypeScript')!, dd = m.get('sketches-js + JS')!;
      console.log(`| ${w} | ${wasm.toFixed(1)} | ${ts.toFixed(1)} | ${dd.toFixed(1)} | ${(dd / wasm).toFixed(1)}x |`);
    }
    console.log();
  }
  if (all || which.has('e2e')) {
    console.log('# End to end: 1,000,000 events, four aggregations, one core (median of 3, alternating)\n');
    const e = await benchE2e();
    report['e2e'] = e;
    const [weir, idio] = e.figures;
    console.log(`input: ${e.file} (${(e.bytes / 1e6).toFixed(0)} MB)`);
    console.log('| implementation | events/s |');
    console.log('| --- | --- |');
    for (const f of e.figures) console.log(`| ${f.impl} | ${Math.round(f.eventsPerSecond).toLocaleString('en-US')} |`);
    console.log(`\nweir / idiomatic: ${(weir!.eventsPerSecond / idio!.eventsPerSecond).toFixed(1)}x\n`);
  }
  if (all || which.has('kafka')) {
    console.log('# Kafka end to end: 1,000,000 events from a 4-partition topic (median of 3, alternating)\n');
    if (process.env['WEIR_BENCH_NO_KAFKA'] === '1') {
      console.log('skipped: WEIR_BENCH_NO_KAFKA=1\n');
      report['kafka'] = { skipped: 'WEIR_BENCH_NO_KAFKA=1' };
    } else {
      const k = await benchKafka();
      report['kafka'] = k;
      printKafka(k);
    }
  }
  if (all || which.has('checkpoint')) {
    console.log('# Checkpoint cost against state size (one tumbling window per key)\n');
    const c = await benchCheckpoint();
    report['checkpoint'] = c;
    printCheckpoint(c);
  }
  if (all || which.has('encode')) {
    console.log('# Results as JSON lines: ns of CPU time per result and per number (median of 5 rounds, alternating)\n');
    const e = benchEncode();
    report['encode'] = e;
    printEncode(e);
  }
  if (which.has('soak')) {
    console.log('# Soak: the generator at full speed, 1,000,000 distinct users, resident memory every 10 s\n');
    const s = await benchSoak();
    report['soak'] = s;
    printSoak(s);
  }
  const file = join(__dirname, '..', '..', 'bench', 'results.json');
  // A run of some benchmarks keeps the figures of the others.
  const before = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>) : {};
  writeFileSync(file, JSON.stringify({ ...before, ...report }, null, 2) + '\n');
  console.log(`figures written to bench/results.json`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
