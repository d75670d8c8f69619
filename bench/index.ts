// `npm run bench`: every figure measured side by side in one run; also written to bench/results.json.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchCore } from './core';

async function main(): Promise<void> {
  const started = new Date().toISOString();
  const which = new Set(process.argv.slice(2));
  const all = which.size === 0;
  const report: Record<string, unknown> = { started, node: process.version };

  if (all || which.has('core')) {
    console.log('# Kernel: ns per event for one aggregation (lower is better)\n');
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
  const file = join(__dirname, '..', '..', 'bench', 'results.json');
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(`figures written to bench/results.json`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
