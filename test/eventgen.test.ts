// The event generator: deterministic, well-formed lines of the documented shape,
// and the configured shares of malformed, invalid, late and ISO-timestamped lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventGenerator, generateLines, type EventGenOptions } from '../src/sources/eventgen';
import { generatorBatches } from '../src/sources/generator';
import { validateConfig } from '../src/config';

const DEFAULT_MODELS = ['claude-opus', 'claude-sonnet', 'claude-haiku', 'gpt-4o', 'gpt-4o-mini', 'llama-3-70b'];
const DEFAULT_REGIONS = ['us', 'eu', 'ap'];
const LATE_MS = 10 * 60_000;

type Kind = 'malformed' | 'invalid' | 'late' | 'ok';

/** Timestamp as epoch ms: a finite JSON number, or a string Date.parse accepts; NaN otherwise. */
function eventTimeMs(v: unknown): number {
  if (typeof v === 'number') return Number.isFinite(v) ? v : NaN;
  if (typeof v === 'string') return Date.parse(v);
  return NaN;
}

/** Sorts lines the way a processor would see them (latency_ms being the value field). */
function classify(lines: readonly string[], outOfOrderMs: number): Kind[] {
  let maxTs = -Infinity;
  return lines.map((line): Kind => {
    let e: unknown;
    try {
      e = JSON.parse(line);
    } catch {
      return 'malformed';
    }
    if (e === null || typeof e !== 'object' || Array.isArray(e)) return 'malformed';
    const ev = e as { timestamp?: unknown; data?: { latency_ms?: unknown } };
    const ts = eventTimeMs(ev.timestamp);
    const latency = ev.data?.latency_ms;
    if (Number.isNaN(ts) || typeof latency !== 'number' || !Number.isFinite(latency)) return 'invalid';
    // An on-time event is never more than outOfOrderMs behind; a late one is 10 min and more.
    const late = ts < maxTs - outOfOrderMs;
    if (late) assert.ok(ts < maxTs - LATE_MS, `late by only ${maxTs - ts} ms`);
    maxTs = Math.max(maxTs, ts);
    return late ? 'late' : 'ok';
  });
}

function counts(kinds: readonly Kind[]): Record<Kind, number> {
  const c: Record<Kind, number> = { malformed: 0, invalid: 0, late: 0, ok: 0 };
  for (const k of kinds) c[k]++;
  return c;
}

test('the same seed gives the same lines; another seed does not', () => {
  const opts: EventGenOptions = { seed: 7, malformedFraction: 0.05, invalidFraction: 0.05, lateFraction: 0.05, isoFraction: 0.2 };
  const a = generateLines(2000, opts);
  assert.deepEqual(generateLines(2000, opts), a);
  const gen = new EventGenerator(opts);
  assert.deepEqual(Array.from({ length: 2000 }, () => gen.next()), a, 'generateLines is next() in a loop');
  const other = generateLines(2000, { ...opts, seed: 8 });
  assert.ok(other.filter((l, i) => l === a[i]).length < 20);
  assert.deepEqual(generateLines(5), generateLines(5, { seed: 42 }), 'the default seed is fixed, not the clock');
});

test('every line is one JSON object of exactly the documented shape, numbers written as JS writes them', () => {
  const startMs = 1735732800000;
  const lines = generateLines(10_000, { seed: 3, startMs, users: 50 });
  const seenModels = new Set<string>(), seenRegions = new Set<string>(), seenUsers = new Set<string>();
  lines.forEach((line, i) => {
    assert.ok(!line.includes('\n'), 'one line');
    const e = JSON.parse(line) as Record<string, unknown>;
    // Field order and number text both match: re-serializing gives the line back.
    assert.equal(JSON.stringify(e), line);
    assert.deepEqual(Object.keys(e), ['id', 'timestamp', 'data', 'metadata']);
    assert.equal(e['id'], `e-${i}`);
    const ts = e['timestamp'];
    assert.ok(Number.isSafeInteger(ts), `timestamp ${String(ts)}`);
    assert.ok((ts as number) >= startMs - 5000 && (ts as number) < startMs + 60_000);
    const data = e['data'] as Record<string, unknown>;
    assert.deepEqual(Object.keys(data), ['model', 'region', 'latency_ms', 'tokens', 'cost']);
    assert.ok(DEFAULT_MODELS.includes(data['model'] as string));
    assert.ok(DEFAULT_REGIONS.includes(data['region'] as string));
    const latency = data['latency_ms'] as number;
    assert.ok(latency > 0 && latency < 1_000_000, `latency_ms ${latency}`);
    assert.match(String(latency), /^\d+(\.\d{1,3})?$/);
    const tokens = data['tokens'] as number;
    assert.ok(Number.isInteger(tokens) && tokens >= 1 && tokens <= 4096, `tokens ${tokens}`);
    const cost = data['cost'] as number;
    assert.ok(cost >= 1e-6 && cost < 1, `cost ${cost}`);
    assert.deepEqual(Object.keys(e['metadata'] as object), ['user_id', 'source']);
    const meta = e['metadata'] as Record<string, unknown>;
    assert.match(meta['user_id'] as string, /^u-(\d|[1-4]\d)$/);
    assert.equal(meta['source'], 'observatory');
    seenModels.add(data['model'] as string);
    seenRegions.add(data['region'] as string);
    seenUsers.add(meta['user_id'] as string);
  });
  assert.equal(seenModels.size, 6);
  assert.equal(seenRegions.size, 3);
  assert.equal(seenUsers.size, 50);
});

test('latency and cost differ by model the way the profiles say', () => {
  const byModel = new Map<string, { latency: number[]; costPerToken: number[] }>();
  for (const line of generateLines(20_000, { seed: 11 })) {
    const { data } = JSON.parse(line) as { data: { model: string; latency_ms: number; tokens: number; cost: number } };
    const m = byModel.get(data.model) ?? byModel.set(data.model, { latency: [], costPerToken: [] }).get(data.model)!;
    m.latency.push(data.latency_ms);
    m.costPerToken.push(data.cost / data.tokens);
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const medians = new Map([...byModel].map(([m, v]) => [m, median(v.latency)]));
  for (const [m, v] of medians) assert.ok(v >= 200 && v <= 2500, `median latency of ${m}: ${v}`);
  assert.ok(medians.get('claude-opus')! > medians.get('claude-haiku')!);
  assert.ok(median(byModel.get('claude-opus')!.costPerToken) > 10 * median(byModel.get('gpt-4o-mini')!.costPerToken));
});

test('event time advances at eventsPerSecond and is never more than outOfOrderMs out of order', () => {
  for (const [eps, ooo] of [[1000, 5000], [10, 0], [50_000, 200]] as const) {
    const startMs = 1704110400000;
    const n = 20_000;
    const ts = generateLines(n, { seed: 5, eventsPerSecond: eps, outOfOrderMs: ooo, startMs }).map((l) => (JSON.parse(l) as { timestamp: number }).timestamp);
    let max = -Infinity;
    for (const t of ts) {
      assert.ok(t >= max - ooo, `${t} is more than ${ooo} ms behind ${max}`);
      max = Math.max(max, t);
    }
    const spanMs = max - startMs;
    const expectedMs = (n * 1000) / eps;
    assert.ok(Math.abs(spanMs - expectedMs) < expectedMs * 0.05 + ooo, `eps ${eps}: ${spanMs} ms for ${n} events, expected ~${expectedMs}`);
  }
});

test('malformed, invalid and late fractions come out roughly as configured on 10,000 lines', () => {
  const opts = { seed: 99, malformedFraction: 0.05, invalidFraction: 0.08, lateFraction: 0.03, isoFraction: 0.1, outOfOrderMs: 5000 };
  const lines = generateLines(10_000, opts);
  const c = counts(classify(lines, opts.outOfOrderMs));
  // Binomial standard deviations here are 22, 27 and 17 lines; allow about 5 of them.
  assert.ok(Math.abs(c.malformed - 500) < 110, `malformed ${c.malformed}`);
  assert.ok(Math.abs(c.invalid - 800) < 135, `invalid ${c.invalid}`);
  assert.ok(Math.abs(c.late - 300) < 85, `late ${c.late}`);
  for (const line of lines) assert.ok(line.trim() !== '' && !line.includes('\n'), 'malformed is never blank or multi-line');
  // None of them by default.
  assert.deepEqual(counts(classify(generateLines(10_000, { seed: 99 }), 5000)), { malformed: 0, invalid: 0, late: 0, ok: 10_000 });
});

test('invalid lines spoil latency_ms or timestamp in each documented way, and only those', () => {
  const kinds = new Set<string>();
  for (const line of generateLines(10_000, { seed: 4, invalidFraction: 0.2 })) {
    const e = JSON.parse(line) as { timestamp?: unknown; data: Record<string, unknown> };
    const ts = eventTimeMs(e.timestamp);
    const latency = e.data['latency_ms'];
    assert.ok(Number.isInteger(e.data['tokens']) && typeof e.data['cost'] === 'number', 'other fields stay valid');
    if (!('timestamp' in e)) kinds.add('timestamp missing');
    else if (Number.isNaN(ts)) kinds.add('timestamp unparseable');
    if (!('latency_ms' in e.data)) kinds.add('latency missing');
    else if (latency === null) kinds.add('latency null');
    else if (typeof latency === 'string') kinds.add('latency string');
  }
  assert.deepEqual([...kinds].sort(), ['latency missing', 'latency null', 'latency string', 'timestamp missing', 'timestamp unparseable']);
});

test('ISO-8601 timestamps name the same instants as epoch ms, and change nothing else', () => {
  const opts = { seed: 12, malformedFraction: 0.02, invalidFraction: 0.02, lateFraction: 0.02, startMs: 1735689599000 };
  const epoch = generateLines(10_000, opts);
  const iso = generateLines(10_000, { ...opts, isoFraction: 0.5 });
  let isoCount = 0;
  const zones = new Set<string>();
  iso.forEach((line, i) => {
    const other = epoch[i]!;
    if (line === other) return;
    const e = JSON.parse(line) as { timestamp: unknown };
    const o = JSON.parse(other) as { timestamp: unknown };
    const raw = e.timestamp;
    assert.ok(typeof raw === 'string' && typeof o.timestamp === 'number', `${line} vs ${other}`);
    assert.match(raw, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?(Z|[+-]\d{2}:\d{2})$/);
    assert.equal(Date.parse(raw), o.timestamp, raw);
    assert.equal(JSON.stringify({ ...e, timestamp: o.timestamp }), other, 'only the timestamp differs');
    zones.add(raw.endsWith('Z') ? 'Z' : raw.slice(-6));
    isoCount++;
  });
  const wellFormed = epoch.filter((l) => /"timestamp":\d/.test(l)).length;
  assert.ok(Math.abs(isoCount - wellFormed / 2) < 250, `iso ${isoCount} of ${wellFormed}`);
  assert.ok(zones.has('Z') && zones.size >= 4, [...zones].join(' '));
  // The start is one second before a new year in UTC, so dates roll over in every zone.
  assert.ok(iso.some((l) => l.includes('"2025-01-01T00:00:0')) && iso.some((l) => l.includes('"2024-12-31T23:59:59')));
});

test('custom models, regions and users; names that need escaping stay valid JSON', () => {
  const models = ['m"quoted', 'back\\slash', 'ünïcode'];
  const lines = generateLines(3000, { seed: 1, models, regions: ['mars'], users: 3 });
  const seen = new Set<string>();
  for (const line of lines) {
    const e = JSON.parse(line) as { data: { model: string; region: string }; metadata: { user_id: string } };
    assert.ok(models.includes(e.data.model));
    assert.equal(e.data.region, 'mars');
    assert.ok(['u-0', 'u-1', 'u-2'].includes(e.metadata.user_id));
    seen.add(e.data.model);
  }
  assert.equal(seen.size, 3);
});

test('options out of range are refused', () => {
  assert.throws(() => new EventGenerator({ malformedFraction: 1.5 }), RangeError);
  assert.throws(() => new EventGenerator({ invalidFraction: -0.1 }), RangeError);
  assert.throws(() => new EventGenerator({ malformedFraction: 0.6, lateFraction: 0.6 }), RangeError);
  assert.throws(() => new EventGenerator({ eventsPerSecond: 0 }), RangeError);
  assert.throws(() => new EventGenerator({ users: 0 }), RangeError);
  assert.throws(() => new EventGenerator({ models: [] }), RangeError);
  assert.doesNotThrow(() => new EventGenerator({ malformedFraction: 0.5, invalidFraction: 0.25, lateFraction: 0.25 }));
});

test('generator source: source.users bounds the distinct user ids (default 500)', async () => {
  const ids = async (over: Record<string, unknown>): Promise<Set<string>> => {
    const cfg = validateConfig({ source: { type: 'generator', count: 20_000, seed: 3, startMs: 0, ...over }, aggregations: [{ name: 'a', value: 'v', window: { type: 'tumbling', sizeMs: 1000 } }] });
    assert.ok(cfg.source.type === 'generator');
    const seen = new Set<string>();
    for await (const b of generatorBatches(cfg.source, 4096))
      for (let i = 0; i < b.n; i++) seen.add(/"user_id":"(u-\d+)"/.exec(b.buf.toString('utf8', b.starts[i], b.ends[i]))![1]!);
    return seen;
  };
  const few = await ids({ users: 7 });
  assert.equal(few.size, 7);
  const many = await ids({ users: 1_000_000 });
  assert.ok(many.size > 10_000, `${many.size} distinct users`);
  assert.ok((await ids({})).size <= 500);
});
