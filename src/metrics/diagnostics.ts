// Mistakes that would otherwise pass in silence: a run that exits 0, emits no
// result and dead-letters every event (a wrong eventTime.field), or one that
// groups everything under `null` (a typo in a groupBy path). It watches the
// first SAMPLE_RECORDS records (their dotted paths, parsed once, off the hot path
// once the sample is full) and the dead letters on the instrumentation bus, and
// warns once per mistake, naming the config key, the field, and the nearest field
// that the events do have.
//
// It also counts dead letters by reason for the run's summary line.
import type { Config } from '../config';
import { isPlainObject } from '../pipeline/paths';
import type { RecordBatch } from '../pipeline/types';
import type { Instrumentation } from './events';

/** Records looked at: the warnings speak of "the first N events". */
export const SAMPLE_RECORDS = 1000;
/** Paths kept per sample (an event with thousands of fields must not grow this without bound). */
const MAX_PATHS = 10_000;

/** Levenshtein distance (insertions, deletions, substitutions), O(|a|·|b|). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = cur;
  }
  return prev[b.length]!;
}

/** The candidate nearest to `path` by edit distance (ties: the first seen); undefined when there is none. */
export function nearest(path: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined, bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(path, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best;
}

/** Every dotted path of a parsed event: `data`, `data.model`, ... (objects only, as field paths address them). */
function collectPaths(v: unknown, prefix: string, into: Set<string>): void {
  if (!isPlainObject(v) || into.size >= MAX_PATHS) return;
  for (const [k, x] of Object.entries(v)) {
    const p = prefix === '' ? k : `${prefix}.${k}`;
    into.add(p);
    collectPaths(x, p, into);
  }
}

/** A path was missing in every sampled event. */
export interface MissingField {
  /** The config key, e.g. `eventTime.field` or `aggregations[0].groupBy[1]`. */
  key: string;
  path: string;
  /** The nearest path the events have, if any. */
  suggestion: string | undefined;
}

export interface RunDiagnosticsOptions {
  /** Where each warning goes (a logger's warn). */
  warn: (msg: string, fields: Record<string, unknown>) => void;
  /** @default SAMPLE_RECORDS */
  sampleRecords?: number;
}

/**
 * Watches a run for silent mistakes and counts its dead letters by reason.
 * Feed it every batch before it is processed ({@link observe}); it reads the
 * dead letters from the bus. Call {@link finish} when the input ended, so that a
 * run shorter than the sample is judged too.
 */
export class RunDiagnostics {
  /** Dead letters per reason, as the operator made them (results a sink refused are counted by the runner). */
  readonly deadLettersByReason: Record<string, number> = {};
  private readonly sampleRecords: number;
  /** Records parsed into the sample so far. */
  private sampled = 0;
  /** JSON objects among them. */
  private objects = 0;
  private readonly paths = new Set<string>();
  /** Per watched path: sampled events that have it. */
  private readonly present = new Map<string, number>();
  private readonly watched: Array<{ key: string; path: string; groupBy: boolean }> = [];
  /** Records, and dead letters per reason and aggregation, within the first sampleRecords records. */
  private early = 0;
  private readonly earlyDead = new Map<string, { reason: string; aggregation: string | undefined; n: number }>();
  private judged = false;
  private readonly off: () => void;

  constructor(
    private readonly cfg: Pick<Config, 'eventTime' | 'aggregations'>,
    bus: Instrumentation,
    private readonly opts: RunDiagnosticsOptions,
  ) {
    this.sampleRecords = opts.sampleRecords ?? SAMPLE_RECORDS;
    this.watched.push({ key: 'eventTime.field', path: cfg.eventTime.field, groupBy: false });
    cfg.aggregations.forEach((a, i) => {
      this.watched.push({ key: `aggregations[${i}].value`, path: a.value, groupBy: false });
      a.groupBy.forEach((g, j) => this.watched.push({ key: `aggregations[${i}].groupBy[${j}]`, path: g, groupBy: true }));
    });
    for (const w of this.watched) this.present.set(w.path, 0);
    this.off = bus.on('batch.processed', (e) => {
      for (const d of e.deadLetters) this.deadLettersByReason[d.reason] = (this.deadLettersByReason[d.reason] ?? 0) + 1;
      if (this.judged) return;
      for (const d of e.deadLetters) {
        const id = `${d.reason}\0${d.aggregation ?? ''}`;
        const c = this.earlyDead.get(id);
        if (c === undefined) this.earlyDead.set(id, { reason: d.reason, aggregation: d.aggregation, n: 1 });
        else c.n++;
      }
      this.early += e.records;
      if (this.early >= this.sampleRecords) this.judge();
    });
  }

  /** Looks at the records of `batch` while the sample is not full (then it costs one comparison). */
  observe(batch: RecordBatch): void {
    if (this.sampled >= this.sampleRecords) return;
    const n = Math.min(batch.n, this.sampleRecords - this.sampled);
    for (let i = 0; i < n; i++) {
      const text = batch.buf.toString('utf8', batch.starts[i], batch.ends[i]);
      if (text.trim() === '') continue;
      this.sampled++;
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch {
        continue;
      }
      if (!isPlainObject(v)) continue;
      this.objects++;
      const seen = new Set<string>();
      collectPaths(v, '', seen);
      for (const p of seen) if (this.paths.size < MAX_PATHS) this.paths.add(p);
      for (const w of this.present.keys()) if (seen.has(w)) this.present.set(w, this.present.get(w)! + 1);
    }
  }

  /** Configured paths that no sampled event has (only once at least one event was an object). */
  missingFields(): MissingField[] {
    if (this.objects === 0) return [];
    const out: MissingField[] = [];
    for (const w of this.watched) {
      if (this.present.get(w.path)! > 0) continue;
      out.push({ key: w.key, path: w.path, suggestion: nearest(w.path, this.paths) });
    }
    return out;
  }

  /** The input ended: judge a run shorter than the sample. Idempotent. */
  finish(): void {
    if (!this.judged && this.early > 0) this.judge();
    this.off();
  }

  private judge(): void {
    this.judged = true;
    const records = this.early;
    const missing = this.missingFields();
    const hint = (m: MissingField): string =>
      `${m.key} "${m.path}" is in none of them${m.suggestion === undefined ? '' : ` (did you mean "${m.suggestion}"?)`}`;
    for (const d of this.earlyDead.values()) {
      if (d.n * 2 <= records) continue;
      const where = d.aggregation === undefined ? '' : ` by aggregation ${d.aggregation}`;
      const why = d.reason === 'invalid' ? missing.filter((m) => !m.key.includes('groupBy') && this.concerns(m, d.aggregation)) : [];
      const because =
        why.length > 0
          ? `: ${why.map(hint).join('; ')}`
          : d.reason === 'late'
            ? ': they are older than the watermark allows (eventTime.maxOutOfOrdernessMs, allowedLatenessMs; with eventTime.idleAdvance, data replayed from the past comes late)'
            : d.reason === 'malformed'
              ? ': they are not JSON objects, one per line'
              : '';
      this.opts.warn(`${d.n} of the first ${records} events were dead-lettered as ${d.reason}${where}${because}`, {
        reason: d.reason,
        aggregation: d.aggregation,
        deadLetters: d.n,
        records,
        fields: why.map((m) => ({ key: m.key, path: m.path, suggestion: m.suggestion })),
      });
    }
    for (const m of missing) {
      if (!m.key.includes('groupBy')) continue;
      this.opts.warn(`${hint(m).replace(' is in none of them', ` is missing in all of the first ${this.sampled} events: they are all grouped under null`)}`, {
        key: m.key,
        path: m.path,
        suggestion: m.suggestion,
        records,
      });
    }
  }

  /** Whether a missing field is one an aggregation's invalid dead letters can come from. */
  private concerns(m: MissingField, aggregation: string | undefined): boolean {
    if (m.key === 'eventTime.field') return true;
    const i = this.cfg.aggregations.findIndex((a) => a.name === aggregation);
    return m.key === `aggregations[${i}].value`;
  }
}
