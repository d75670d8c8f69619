// Runs lines through the real operator (WASM core included) without any I/O.
import { validateConfig, type Config } from '../../src/config';
import { WindowOperator, type Output } from '../../src/pipeline/operator';
import { batchOfLines } from '../../src/sources/lines';
import type { DeadLetter, WindowResult } from '../../src/pipeline/types';

export interface RunResult {
  results: WindowResult[];
  deadLetters: DeadLetter[];
  late: number[];
  gone: Output['gone'];
}

/** A config for tests: a file source placeholder and the given parts. */
export function testConfig(parts: Record<string, unknown>): Config {
  return validateConfig({ source: { type: 'stdin' }, ...parts });
}

/** Feeds `lines` in batches of `batchSize` (splitting batches must not change anything), then ends the input. */
export function runLines(cfg: Config, lines: readonly string[], batchSize = 4096, decoder: 'scan' | 'json' = 'scan'): RunResult {
  const op = new WindowOperator({ ...cfg, processing: { ...cfg.processing, batchSize: Math.max(batchSize, 1) } }, { clock: () => 0, decoder });
  const acc: RunResult = { results: [], deadLetters: [], late: cfg.aggregations.map(() => 0), gone: [] };
  const take = (o: Output): void => {
    const r = o.results;
    // The lines the sinks write are the records' JSON, byte for byte.
    for (let i = 0; i < r.n; i++) if (r.textOf(i) !== JSON.stringify(r.toObject(i))) throw new Error(`result line ${i} is not its record's JSON: ${r.textOf(i)}`);
    acc.results.push(...r.toObjects());
    acc.deadLetters.push(...o.deadLetters);
    acc.gone.push(...o.gone);
    o.late.forEach((n, a) => (acc.late[a]! += n));
  };
  for (let i = 0; i < lines.length; i += batchSize) take(op.process(batchOfLines(lines.slice(i, i + batchSize), 0, i)));
  take(op.finish());
  return acc;
}

/** The final result per (name, key, window): the last one emitted. */
export function finals(results: readonly WindowResult[]): Map<string, WindowResult> {
  const m = new Map<string, WindowResult>();
  for (const r of results) m.set(`${r.name}|${r.key}|${r.window.start}|${r.window.end}`, r);
  return m;
}

export function event(ts: number | string, value: unknown, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ timestamp: ts, data: { model: 'm', region: 'us', latency_ms: value, ...extra } });
}
