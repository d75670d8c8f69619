// Summarizes V8 CPU profiles (`node --cpu-prof`, e.g. from WEIR_LATENCY_PROFILE):
// for each file, idle and GC shares and the functions with the most self time.
//   node dist/bench/cpuprofile.js <file.cpuprofile>... [--top N]
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idlePercent: number;
  gcPercent: number;
  top: { fn: string; where: string; selfMs: number; percent: number }[];
}

/** Self time per function (summed over its call sites), from the samples and their time deltas. */
export function summarize(file: string, topN = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  // A sample's delta is the time until the next sample: attribute it to that sample's node.
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt);
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0) || 1;
  const byFn = new Map<string, { fn: string; where: string; us: number }>();
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    const where = f.url === '' ? '' : `${f.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}`;
    const k = `${f.functionName}@${where}`;
    const e = byFn.get(k) ?? byFn.set(k, { fn: f.functionName || '(anonymous)', where, us: 0 }).get(k)!;
    e.us += us;
  }
  const share = (name: string): number => [...byFn.values()].filter((e) => e.fn === name).reduce((a, e) => a + e.us, 0) / total;
  const top = [...byFn.values()]
    .filter((e) => e.fn !== '(idle)')
    .sort((a, b) => b.us - a.us)
    .slice(0, topN)
    .map((e) => ({ fn: e.fn, where: e.where, selfMs: e.us / 1000, percent: (100 * e.us) / total }));
  return { file: basename(file), totalMs: total / 1000, idlePercent: 100 * share('(idle)'), gcPercent: 100 * share('(garbage collector)'), top };
}

export function printSummary(s: ProfileSummary): void {
  console.log(`## ${s.file}: ${(s.totalMs / 1000).toFixed(1)} s sampled, idle ${s.idlePercent.toFixed(1)}%, GC ${s.gcPercent.toFixed(1)}%\n`);
  console.log('| self ms | % of wall | function | where |');
  console.log('| --- | --- | --- | --- |');
  for (const t of s.top) console.log(`| ${t.selfMs.toFixed(0)} | ${t.percent.toFixed(1)} | ${t.fn} | ${t.where} |`);
  console.log();
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--top');
  const topN = i >= 0 ? Number(args.splice(i, 2)[1]) : 15;
  for (const f of args) printSummary(summarize(f, topN));
}
