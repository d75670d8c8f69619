// `npm run bench`: every figure measured side by side in one run; also written to bench/results.json.
// First, as `weir` does: a Kafka consumer on this thread decodes with Weir's decoder.
import '../src/sources/consumer-on-main';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchCore } from './core';
import { benchE2e, WORKLOADS, type E2eResult } from './e2e';
import { benchKafka, printKafka, type KafkaBenchResult } from './kafka';
import { benchCheckpoint, benchWideBarrier, printCheckpoint, printWideBarrier } from './checkpoint';
import { benchEncode, printEncode } from './encode';
import { benchSoak, printSoak } from './soak';
import { benchLatency, printLatency } from './latency';
import { benchRestore, printRestore } from './restore';

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
  // Shorter runs on a busy machine: fewer events or rounds (the figures in docs/ use the defaults).
  const events = Number(process.env['WEIR_BENCH_EVENTS'] ?? 1_000_000);
  const rounds = Number(process.env['WEIR_BENCH_ROUNDS'] ?? 3);
  const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
  const ratios: { bench: string; workload: string; resultsPerEvent?: number; ratio: number; steadyRatio?: number }[] = [];
  if (all || which.has('e2e')) {
    console.log(`# End to end: ${fmt(events)} events, one core (median of ${rounds}, alternating), two workloads\n`);
    const out: E2eResult[] = [];
    for (const w of [WORKLOADS.aggregates, WORKLOADS.sessions]) {
      const e = await benchE2e(events, rounds, w);
      out.push(e);
      console.log(`workload: ${e.workload}; input: ${e.file} (${(e.bytes / 1e6).toFixed(0)} MB); results per event: weir ${e.resultsPerEvent.toFixed(3)}, idiomatic ${e.idiomaticResultsPerEvent.toFixed(3)}`);
      console.log('| implementation | events/s |');
      console.log('| --- | --- |');
      for (const f of e.figures) console.log(`| ${f.impl} | ${fmt(f.eventsPerSecond)} |`);
      console.log(`\nweir / idiomatic: ${e.ratio.toFixed(1)}x\n`);
      ratios.push({ bench: 'weir run / idiomatic Node.js', workload: e.workload, resultsPerEvent: e.resultsPerEvent, ratio: e.ratio });
    }
    // `e2e` keeps its shape (today's workload); the high-output one sits beside it.
    report['e2e'] = out[0];
    report['e2eSessions'] = out[1];
  }
  if (all || which.has('kafka')) {
    const partitions = Number(process.env['WEIR_BENCH_PARTITIONS'] ?? 4);
    console.log(`# Kafka end to end: ${fmt(events)} events from a ${partitions}-partition topic (median of ${rounds}, alternating), two workloads\n`);
    if (process.env['WEIR_BENCH_NO_KAFKA'] === '1') {
      console.log('skipped: WEIR_BENCH_NO_KAFKA=1\n');
      report['kafka'] = { skipped: 'WEIR_BENCH_NO_KAFKA=1' };
    } else {
      const out: KafkaBenchResult[] = [];
      for (const w of [WORKLOADS.aggregates, WORKLOADS.sessions]) {
        const k = await benchKafka(events, rounds, partitions, w);
        out.push(k);
        printKafka(k);
        ratios.push({ bench: 'weir on kafka / bare kafkajs', workload: k.workload, ratio: k.ratio, steadyRatio: k.steadyRatio });
      }
      report['kafka'] = out[0];
      report['kafkaSessions'] = out[1];
    }
  }
  if (ratios.length > 0) {
    console.log('# Both workloads side by side\n');
    console.log('| bench | workload | results per event | ratio | steady ratio |');
    console.log('| --- | --- | --- | --- | --- |');
    for (const r of ratios)
      console.log(`| ${r.bench} | ${r.workload} | ${r.resultsPerEvent === undefined ? '-' : r.resultsPerEvent.toFixed(3)} | ${r.bench.includes('kafka') ? `${(r.ratio * 100).toFixed(0)}%` : `${r.ratio.toFixed(1)}x`} | ${r.steadyRatio === undefined ? '-' : `${(r.steadyRatio * 100).toFixed(0)}%`} |`);
    console.log();
  }
  if (all || which.has('checkpoint')) {
    console.log('# Checkpoint cost against state size (one tumbling window per key)\n');
    const c = await benchCheckpoint();
    report['checkpoint'] = c;
    printCheckpoint(c);
    const wide = benchWideBarrier();
    report['checkpointWideBarrier'] = wide;
    printWideBarrier(wide);
  }
  if (all || which.has('encode')) {
    console.log('# Results as JSON lines: ns of the CPU time of the encoding thread per result and per number (median of 5 rounds, alternating)\n');
    const e = benchEncode();
    report['encode'] = e;
    printEncode(e);
  }
  if (all || which.has('restore')) {
    console.log('# Restoring a partition: from the changelog, from the local cache\n');
    if (process.env['WEIR_BENCH_NO_KAFKA'] === '1') {
      console.log('skipped: WEIR_BENCH_NO_KAFKA=1\n');
      report['restore'] = { skipped: 'WEIR_BENCH_NO_KAFKA=1' };
    } else {
      const r = await benchRestore();
      report['restore'] = r;
      printRestore(r);
    }
  }
  if (which.has('soak')) {
    console.log('# Soak: the generator at full speed, 1,000,000 distinct users, resident memory every 10 s\n');
    const s = await benchSoak();
    report['soak'] = s;
    printSoak(s);
  }
  if (all || which.has('latency')) {
    console.log('# Latency on a live stream: Kafka in, Kafka out, events at a steady rate (event time = wall clock)\n');
    if (process.env['WEIR_BENCH_NO_KAFKA'] === '1') {
      console.log('skipped: WEIR_BENCH_NO_KAFKA=1\n');
      report['latency'] = { skipped: 'WEIR_BENCH_NO_KAFKA=1' };
    } else {
      const l = await benchLatency();
      report['latency'] = l;
      printLatency(l);
    }
  }
  // One part run alone replaces its own figures and keeps the others', and `started`
  // stays the full run's: the part's own start goes into `partsStarted`.
  const file = join(__dirname, '..', '..', 'bench', 'results.json');
  const kept = !all && existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>) : {};
  const parts = Object.keys(report).filter((k) => k !== 'started' && k !== 'node');
  const merged = all
    ? report
    : { ...kept, ...report, started: kept['started'] ?? started, partsStarted: { ...(kept['partsStarted'] as Record<string, string> | undefined), ...Object.fromEntries(parts.map((k) => [k, started])) } };
  writeFileSync(file, JSON.stringify(merged, null, 2) + '\n');
  console.log(`figures written to bench/results.json`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
