// Running `weir run` as a child process (so it can be killed with SIGKILL) and
// comparing what runs wrote.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DeadLetter, WindowResult } from '../../../src/pipeline/types';
import { generateLines } from '../../../src/sources/eventgen';
import { BROKERS } from './kafka';

const BIN = join(__dirname, '..', '..', '..', '..', 'bin', 'weir.js');

export const AGGREGATIONS = [
  { name: 'latency_metrics', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 60_000 } },
  { name: 'latency_sliding', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'sliding', sizeMs: 120_000, slideMs: 30_000 } },
  { name: 'user_sessions', groupBy: ['metadata.user_id'], value: 'data.tokens', window: { type: 'session', gapMs: 30_000 } },
];

/** A config for one instance whose files all live in `dir`. */
// idleTimeoutMs is long: a partition whose first fetch is slow must not count as idle
// (then the others move W on and its events come late), or runs would differ.
export function kafkaRunConfig(dir: string, topic: string, groupId: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    source: { type: 'kafka', brokers: BROKERS, topic, groupId, bounded: true, fromBeginning: true, idleTimeoutMs: 60_000, sessionTimeoutMs: 2000 },
    eventTime: { maxOutOfOrdernessMs: 10_000, allowedLatenessMs: 30_000 },
    aggregations: AGGREGATIONS,
    sinks: [{ type: 'file', path: join(dir, 'results.jsonl') }],
    deadLetter: { type: 'file', path: join(dir, 'dlq.jsonl') },
    state: { backend: 'rocksdb', dir: join(dir, 'state') },
    checkpoint: { dir: join(dir, 'checkpoints'), intervalMs: 100, retain: 3 },
    // Checkpoints that write the local cache and checkpoints that commit to the changelog alone, both.
    changelog: { cacheIntervalMs: 300 },
    processing: { batchSize: 256, instanceId: 'weir-test' },
    log: { level: 'info' },
    ...over,
  };
}

export function writeConfig(dir: string, cfg: Record<string, unknown>): string {
  const file = join(dir, 'weir.json');
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  return file;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Killed by the test's deadline, not by the test's plan. */
  hung: boolean;
}

/** Longest a `weir run` child may take before the test kills it. */
const RUN_DEADLINE_MS = 120_000;

export function spawnWeir(configFile: string, env: Record<string, string> = {}): { child: ChildProcess; exit: Promise<Exit> } {
  const child = spawn(process.execPath, [BIN, 'run', '--config', configFile], {
    env: { ...process.env, KAFKAJS_NO_PARTITIONER_WARNING: '1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // A bounded run here takes seconds; one that hangs is killed so the test fails saying so.
  let hung = false;
  const deadline = setTimeout(() => {
    hung = true;
    child.kill('SIGKILL');
  }, RUN_DEADLINE_MS);
  const exit = new Promise<Exit>((resolve) =>
    child.on('exit', (code, signal) => {
      clearTimeout(deadline);
      resolve({ code, signal, hung, stderr: hung ? `${stderr}\n[test] weir run did not finish within ${RUN_DEADLINE_MS} ms and was killed` : stderr });
    }),
  );
  return { child, exit };
}

/** How one run of a crash plan ends: at a fault point (WEIR_FAULT), or killed with SIGKILL this long after its first completed checkpoint. */
export interface CrashStep {
  fault?: string;
  killAfterMs?: number;
}

/**
 * `weir run` on `configFile` again and again until a run exits 0, run i crashing as
 * plan[i] says (runs past the plan run undisturbed). Every run before the last must
 * have ended by SIGKILL, within `maxRuns` runs. Returns every run's exit.
 */
export async function runThroughCrashes(configFile: string, plan: readonly CrashStep[], maxRuns = 30): Promise<Exit[]> {
  const exits: Exit[] = [];
  for (let run = 0; ; run++) {
    assert.ok(run < maxRuns, 'the run never finished');
    const step = plan[run] ?? {};
    const { child, exit } = spawnWeir(configFile, step.fault === undefined ? {} : { WEIR_FAULT: step.fault });
    let timer: NodeJS.Timeout | undefined;
    if (step.killAfterMs !== undefined) {
      const after = step.killAfterMs;
      let armed = false;
      child.stderr!.on('data', (d: Buffer) => {
        if (armed || !/checkpoint \d+ done/.test(d.toString())) return;
        armed = true;
        timer = setTimeout(() => child.kill('SIGKILL'), after);
      });
    }
    const e = await exit;
    clearTimeout(timer);
    exits.push(e);
    if (e.code === 0) return exits;
    assert.ok(!e.hung && e.signal === 'SIGKILL', `run ${run} ended with ${e.code ?? e.signal}: ${e.stderr.slice(-2000)}`);
  }
}

export function readLines<T>(file: string): T[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  // A kill -9 may cut the last line of a file short: it is written again after recovery.
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as T];
      } catch {
        return [];
      }
    });
}

export const windowId = (r: WindowResult): string => `${r.name}|${r.key}|${r.window.start}|${r.window.end}`;

/**
 * The final result of each window (docs/semantics.md): the last one emitted for it, minus
 * session windows superseded by a larger window of the same name and key that
 * contains them (they fired, then merged).
 */
export function finalResults(results: readonly WindowResult[]): Map<string, WindowResult> {
  const last = new Map<string, WindowResult>();
  for (const r of results) last.set(windowId(r), r);
  return dropSuperseded(last);
}

/** Removes session windows that a larger window of the same name and key contains. */
export function dropSuperseded(last: Map<string, WindowResult>): Map<string, WindowResult> {
  const byKey = new Map<string, WindowResult[]>();
  for (const r of last.values()) {
    const k = `${r.name}|${r.key}`;
    const list = byKey.get(k);
    if (list) list.push(r);
    else byKey.set(k, [r]);
  }
  for (const list of byKey.values()) {
    // Start ascending, end descending: a window is contained in another iff an earlier one reaches as far.
    list.sort((a, b) => a.window.start - b.window.start || b.window.end - a.window.end);
    let reach = -Infinity;
    for (const r of list) {
      if (r.window.end <= reach) last.delete(windowId(r));
      else reach = r.window.end;
    }
  }
  return last;
}

/** Asserts `got` holds exactly the windows and values of `want`. */
export function assertSameFinals(got: Map<string, WindowResult>, want: Map<string, WindowResult>, what: string): void {
  const show = (m: Map<string, WindowResult>) => [...m].map(([id, r]) => `${id}|${JSON.stringify(r.results)}`).sort();
  const g = show(got), w = show(want);
  const missing = w.filter((x) => !g.includes(x)).slice(0, 3);
  const extra = g.filter((x) => !w.includes(x)).slice(0, 3);
  assert.ok(missing.length === 0 && extra.length === 0 && g.length === w.length, `${what}: ${g.length} final windows vs ${w.length} expected; missing ${JSON.stringify(missing)}; unexpected ${JSON.stringify(extra)}`);
}

/** No emission of any window ever counted more events than the window's true final count. */
export function assertNeverHigher(results: readonly WindowResult[], want: Map<string, WindowResult>, what: string): void {
  for (const r of results) {
    const f = want.get(windowId(r));
    // A session that later merged into a larger one has no final of its own.
    if (f === undefined) continue;
    assert.ok(r.results.count <= f.results.count, `${what}: ${windowId(r)} emitted count ${r.results.count} > final ${f.results.count}`);
  }
}

/** Dead letters as a set (a replay after a crash may write some twice). */
export function deadLetterSet(dls: readonly DeadLetter[]): string[] {
  return [...new Set(dls.map((d) => `${d.partition}|${d.offset}|${d.reason}|${d.aggregation ?? ''}`))].sort();
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every aggregation keyed by model and region, the key the topic is partitioned by. */
export const BY_MODEL_REGION = [
  { name: 'latency_metrics', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 60_000 } },
  { name: 'tokens_sliding', groupBy: ['data.model', 'data.region'], value: 'data.tokens', window: { type: 'sliding', sizeMs: 120_000, slideMs: 30_000 } },
  { name: 'cost_sessions', groupBy: ['data.model', 'data.region'], value: 'data.cost', window: { type: 'session', gapMs: 2_000 } },
];

/** Events keyed by model and region, as scripts/produce.js keys them. No event is late on any partition. */
export function keyedEvents(count: number, eventsPerSecond = 20): Array<{ key: string; value: string }> {
  return generateLines(count, { seed: 11, eventsPerSecond, outOfOrderMs: 5000, invalidFraction: 0.002 }).map((value) => {
    const m = /"model":"([^"]*)","region":"([^"]*)"/.exec(value);
    return { key: m === null ? 'none' : `${m[1]}:${m[2]}`, value };
  });
}


/**
 * Per window, the fullest result any instance emitted (a window re-read by another
 * instance after a rebalance is emitted twice, with the same final values), minus
 * superseded sessions.
 */
export function fullestResults(all: readonly WindowResult[]): Map<string, WindowResult> {
  const best = new Map<string, WindowResult>();
  for (const r of all) {
    const b = best.get(windowId(r));
    if (b === undefined || r.results.count >= b.results.count) best.set(windowId(r), r);
  }
  return dropSuperseded(best);
}
