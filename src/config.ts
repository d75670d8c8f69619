// The one typed config: schema, defaults, durations, validation, secret masking.
// Every field says its unit; defaults live here and nowhere else.
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors/errors';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of `250`, `"250ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"1d"`; undefined if not a duration. */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const text = v.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const parts = text.match(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g);
  if (parts === null || parts.join('') !== text) return undefined;
  let ms = 0;
  for (const p of parts) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(p)!;
    ms += Number(m[1]) * UNITS[m[2]!]!;
  }
  return ms;
}

/**
 * Longest duration any setting takes (365 days, ms): beyond it a window, gap or bound
 * is a typo (`1e300`), and its arithmetic would leave the exact range of doubles.
 */
export const MAX_DURATION_MS = 365 * 86_400_000;

/** A duration in whole milliseconds, written as a number or a string like "5m", at most MAX_DURATION_MS. */
function duration(opts: { positive: boolean }) {
  return z.union([z.number(), z.string()]).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined || !Number.isInteger(ms) || (opts.positive && ms <= 0)) {
      ctx.issues.push({
        code: 'custom',
        input: v,
        message: `must be a ${opts.positive ? 'positive' : 'non-negative'} whole number of milliseconds or a duration like "30s", "5m" (got ${JSON.stringify(v)})`,
      });
      return z.NEVER;
    }
    if (ms > MAX_DURATION_MS) {
      ctx.issues.push({ code: 'custom', input: v, message: `must be at most 365 days (${MAX_DURATION_MS} ms) (got ${JSON.stringify(v)})` });
      return z.NEVER;
    }
    return ms;
  });
}

/** Most windows one event of a sliding aggregation belongs to (sizeMs / slideMs, rounded up): each costs work per event. */
export const MAX_WINDOWS_PER_EVENT = 1000;

/** A dotted field path: non-empty segments joined by '.' (so no '..', leading or trailing '.'). */
const path = z.string().superRefine((v, ctx) => {
  if (v.split('.').some((seg) => seg === ''))
    ctx.addIssue({ code: 'custom', message: `must be a dotted field path like "data.model" (got ${JSON.stringify(v)}: ${v === '' ? 'empty' : 'an empty segment'})` });
});
const secret = z.string().optional();

const fileSource = z.strictObject({
  type: z.literal('file'),
  /** JSONL file to read to its end. */
  path: z.string().min(1),
});
const stdinSource = z.strictObject({ type: z.literal('stdin') });
const generatorSource = z.strictObject({
  type: z.literal('generator'),
  /** Event-time rate: event timestamps advance 1000/eventsPerSecond ms per event. @default 1000 */
  eventsPerSecond: z.number().positive().default(1000),
  /** Events to generate; the source is unbounded when absent. */
  count: z.number().int().nonnegative().optional(),
  /** Pace generation to the wall clock at eventsPerSecond (otherwise as fast as possible). @default false */
  realtime: z.boolean().default(false),
  /** PRNG seed. @default 1 */
  seed: z.number().int().default(1),
  /** Event time of the first event, epoch ms. @default now */
  startMs: z.number().int().optional(),
});
const kafkaSource = z.strictObject({
  type: z.literal('kafka'),
  brokers: z.array(z.string().min(1)).min(1),
  topic: z.string().min(1),
  /** Consumer group id. @default "weir" */
  groupId: z.string().min(1).default('weir'),
  /** Start from the earliest offset when the group has none. @default true */
  fromBeginning: z.boolean().default(true),
  /** Read every assigned partition up to the end offsets seen at start, then finish. @default false */
  bounded: z.boolean().default(false),
  /** A partition silent this long stops holding the watermark back (ms). @default 10000 */
  idleTimeoutMs: duration({ positive: true }).default(10_000),
  /** Most bytes fetched per partition per request (kafkajs maxBytesPerPartition): bounds memory. @default 1048576 */
  maxBytesPerPartition: z.number().int().positive().default(1_048_576),
  /** The group drops a member it has not heard from for this long (ms); a restart after a crash rejoins once it has. @default 30000 */
  sessionTimeoutMs: duration({ positive: true }).default(30_000),
  clientId: z.string().default('weir'),
  ssl: z.boolean().default(false),
  sasl: z
    .strictObject({
      mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
      username: z.string(),
      /** Prefer passwordEnv: the name of an environment variable holding the password. */
      password: secret,
      passwordEnv: z.string().optional(),
    })
    .optional(),
});

const window = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('tumbling'), /** ms */ sizeMs: duration({ positive: true }) }),
  z.strictObject({ type: z.literal('sliding'), /** ms */ sizeMs: duration({ positive: true }), /** ms */ slideMs: duration({ positive: true }) }),
  z.strictObject({ type: z.literal('session'), /** ms */ gapMs: duration({ positive: true }) }),
]);

const aggregation = z.strictObject({
  /** Names the results, state keys and dead letters. Unique. */
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'must be letters, digits, "_", "-" or "." (it is part of state keys)'),
  /** Dotted paths whose values form the key, in this order. @default [] */
  groupBy: z.array(path).default([]),
  /** Dotted path of the numeric value to aggregate. */
  value: path,
  window,
});

const sink = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('stdout') }),
  /** append: keep the file's lines. @default true for a kafka source (a restart resumes), false otherwise */
  z.strictObject({ type: z.literal('file'), path: z.string().min(1), append: z.boolean().optional() }),
  z.strictObject({ type: z.literal('kafka'), topic: z.string().min(1), brokers: z.array(z.string()).optional() }),
  z.strictObject({ type: z.literal('postgres'), url: z.string().min(1), table: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).default('window_results') }),
]);

const deadLetter = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('file'), path: z.string().min(1), append: z.boolean().optional() }),
  z.strictObject({ type: z.literal('stdout') }),
  z.strictObject({ type: z.literal('stderr') }),
  z.strictObject({ type: z.literal('kafka'), topic: z.string().min(1), brokers: z.array(z.string()).optional() }),
]);

export const configSchema = z.strictObject({
  source: z.discriminatedUnion('type', [fileSource, stdinSource, generatorSource, kafkaSource]),
  eventTime: z
    .strictObject({
      /** Dotted path of the event time: epoch ms or ISO-8601. @default "timestamp" */
      field: path.default('timestamp'),
      /** W = max event time seen - this (ms). @default 30000 */
      maxOutOfOrdernessMs: duration({ positive: false }).default(30_000),
      /** Windows keep their state and accept late events this long after W passes their end (ms). @default 60000 */
      allowedLatenessMs: duration({ positive: false }).default(60_000),
    })
    .prefault({}),
  aggregations: z.array(aggregation).min(1, 'needs at least one aggregation'),
  /** Where results go; at least one. @default [{ type: stdout }] */
  sinks: z.array(sink).min(1, 'needs at least one sink (results would go nowhere)').default([{ type: 'stdout' }]),
  /** @default { type: file, path: dead-letters.jsonl } */
  deadLetter: deadLetter.default({ type: 'file', path: 'dead-letters.jsonl' }),
  state: z
    .strictObject({
      /** @default rocksdb for a kafka source, memory otherwise */
      backend: z.enum(['memory', 'rocksdb', 'redis']).optional(),
      /** RocksDB directory. @default ./data/state */
      dir: z.string().default('./data/state'),
      /** Redis URL. @default redis://127.0.0.1:6379 */
      url: z.string().default('redis://127.0.0.1:6379'),
      /**
       * RocksDB: what to do when a partition's database is corrupt. `fail`: stop, naming
       * its directory. `rebuild`: move the directory aside (`<dir>.corrupt-<time>`), log a
       * warning naming it, and rebuild the partition from the earliest offset of its topic.
       * @default "fail"
       */
      onCorruption: z.enum(['fail', 'rebuild']).default('fail'),
    })
    .prefault({}),
  checkpoint: z
    .strictObject({
      dir: z.string().default('./data/checkpoints'),
      /** ms between checkpoints. @default 60000 */
      intervalMs: duration({ positive: true }).default(60_000),
      /** Checkpoints kept. @default 3 */
      retain: z.number().int().positive().default(3),
    })
    .prefault({}),
  metrics: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      /** Port of /metrics, /healthz and /readyz; 0 picks a free one. Omit `metrics` for no server. @default 9464 */
      port: z.number().int().min(0).max(65535).default(9464),
    })
    .optional(),
  processing: z
    .strictObject({
      /** Events per batch handed to the WebAssembly core. @default 4096 */
      batchSize: z.number().int().min(1).max(65536).default(4096),
      /** Name in dead-letter records and logs. @default $WEIR_INSTANCE_ID or "processor-1" */
      instanceId: z.string().default(process.env['WEIR_INSTANCE_ID'] ?? 'processor-1'),
    })
    .prefault({}),
  /**
   * Retries of sink writes (results and dead letters) that fail transiently: delays
   * initialDelayMs, x factor, ... (100, 200, 400 ms by default). A result write whose
   * retries run out dead-letters its results (reason `undeliverable`, `retry_count` =
   * retries); a dead-letter write whose retries run out stops the run (src/sinks/delivery.ts).
   */
  retry: z
    .strictObject({
      /** Retries after the first attempt; 0 = never retry. @default 3 */
      retries: z.number().int().min(0).max(100).default(3),
      /** Delay before the first retry, ms. @default 100 */
      initialDelayMs: duration({ positive: false }).default(100),
      /** Each delay is the previous one times this (1 = constant delay). @default 2 */
      factor: z.number().min(1).max(10).default(2),
      /** Upper bound of one delay, ms. @default 30000 */
      maxDelayMs: duration({ positive: true }).default(30_000),
    })
    .prefault({}),
  /**
   * Structured JSON-lines logs on stderr (start, finish, retries, errors), secrets
   * masked. Omit `log` for none (like `metrics`): `weir run` then writes only its
   * one-line error and, on a terminal, progress. `log: {}` logs at "info".
   */
  log: z
    .strictObject({
      /** Lowest level written. @default "info" */
      level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
    })
    .optional(),
});

export type Config = z.output<typeof configSchema>;
export type AggregationConfig = Config['aggregations'][number];
export type WindowConfig = AggregationConfig['window'];
export type SourceConfig = Config['source'];
export type SinkConfig = Config['sinks'][number];
export type DeadLetterConfig = Config['deadLetter'];

function issuePath(p: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const k of p) out += typeof k === 'number' ? `[${k}]` : out === '' ? String(k) : `.${String(k)}`;
  return out === '' ? '(top level)' : out;
}

/** Validates a parsed config object; throws ConfigError naming the first wrong key. */
export function validateConfig(raw: unknown, origin = 'config'): Config {
  const r = configSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    let msg = issue.message;
    if (issue.code === 'unrecognized_keys') msg = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    if (issue.code === 'invalid_union' && 'discriminator' in issue) msg = `unknown type; expected one of the documented types`;
    throw new ConfigError(`${origin}: ${issuePath(issue.path)}: ${msg}`);
  }
  const cfg = r.data;
  const names = new Set<string>();
  cfg.aggregations.forEach((a, i) => {
    if (names.has(a.name)) throw new ConfigError(`${origin}: aggregations[${i}].name: duplicate aggregation name "${a.name}"`);
    names.add(a.name);
  });
  cfg.aggregations.forEach((a, i) => {
    // With slide > size some events would fall in no window at all: neither counted nor dead-lettered.
    if (a.window.type === 'sliding' && a.window.slideMs > a.window.sizeMs)
      throw new ConfigError(`${origin}: aggregations[${i}].window.slideMs: must not exceed sizeMs (${a.window.slideMs} > ${a.window.sizeMs})`);
    // Every event is added to each of its windows: the work per event grows with their number.
    if (a.window.type === 'sliding' && Math.ceil(a.window.sizeMs / a.window.slideMs) > MAX_WINDOWS_PER_EVENT)
      throw new ConfigError(
        `${origin}: aggregations[${i}].window.slideMs: must be at least sizeMs / ${MAX_WINDOWS_PER_EVENT} (${Math.ceil(a.window.sizeMs / MAX_WINDOWS_PER_EVENT)} ms for sizeMs ${a.window.sizeMs}): each event belongs to sizeMs / slideMs windows, ${Math.ceil(a.window.sizeMs / a.window.slideMs)} with slideMs ${a.window.slideMs}, at most ${MAX_WINDOWS_PER_EVENT}`,
      );
  });
  if (cfg.state.backend === undefined) cfg.state.backend = cfg.source.type === 'kafka' ? 'rocksdb' : 'memory';
  return cfg;
}

/** Reads a YAML or JSON config file (YAML is a superset, but .json files get JSON's error messages). */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(code === 'ENOENT' ? `config file not found: ${file}` : `cannot read config file ${file}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = extname(file) === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new ConfigError(`${file}: not valid ${extname(file) === '.json' ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0]}`);
  }
  return validateConfig(raw, file);
}

/** The config with every secret replaced by "***", for logs and --print-config. */
export function maskSecrets(cfg: Config): Config {
  const copy = structuredClone(cfg);
  if (copy.source.type === 'kafka' && copy.source.sasl?.password !== undefined) copy.source.sasl.password = '***';
  for (const s of copy.sinks) if (s.type === 'postgres') s.url = s.url.replace(/\/\/([^:/@]+):([^@]*)@/, '//$1:***@');
  copy.state.url = copy.state.url.replace(/\/\/([^:/@]*):([^@]*)@/, '//$1:***@');
  return copy;
}
