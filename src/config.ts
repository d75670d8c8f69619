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
/** Silence after which an unbounded embedded source counts as idle (ms); see eventTime.idleAdvance. @default 10000 */
const embeddedIdleTimeoutMs = () => duration({ positive: true }).default(10_000);
const stdinSource = z.strictObject({
  type: z.literal('stdin'),
  /** No line for this long (ms) makes stdin idle (eventTime.idleAdvance). @default 10000 */
  idleTimeoutMs: embeddedIdleTimeoutMs(),
});
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
  /** No event for this long (ms) makes an unbounded generator idle (eventTime.idleAdvance). @default 10000 */
  idleTimeoutMs: embeddedIdleTimeoutMs(),
  /** Distinct `metadata.user_id` values (`u-0` .. `u-(users-1)`; low ids are the heavy users). @default 500 */
  users: z.number().int().positive().default(500),
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
  /**
   * Where kafkajs's consumer (fetching and decoding records) runs. `own`: a thread of
   * its own, which reads ahead while the operator loop works. `main`: the operator
   * loop's thread, which then takes turns with it, but starts no thread and hands no
   * batch over; on one core that costs less (docs/internals.md). `auto`: `main` when
   * the process may use one core only (a CPU limit under 2 cores on Kubernetes,
   * `taskset -c 0`: src/cores.ts), `own` otherwise. @default "auto"
   */
  consumerThread: z.enum(['auto', 'own', 'main']).default('auto'),
  /**
   * TLS to the brokers: `true` (the system's CAs), or PEM file paths, read at start:
   * `ca` (the brokers' CA, instead of the system's), and `cert` with `key` (a
   * client certificate, for clusters that authenticate clients by TLS). Kafka sinks
   * without brokers of their own use the same. @default false
   */
  ssl: z
    .union([
      z.boolean(),
      z.strictObject({
        /** PEM file of the CA that signed the brokers' certificates. */
        ca: z.string().min(1).optional(),
        /** PEM file of the client certificate (needs `key`). */
        cert: z.string().min(1).optional(),
        /** PEM file of the client certificate's private key (needs `cert`). */
        key: z.string().min(1).optional(),
      }),
    ])
    .default(false),
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

/**
 * Each sink (and the dead-letter queue) has a queue of writes in flight; the loop
 * waits only when it is full (back pressure).
 */
export const IN_FLIGHT_DEFAULTS = { records: 100_000, bytes: 64 * 1024 * 1024 } as const;
const inFlight = {
  /** Records queued or being written before the loop waits. @default 100000 */
  maxInFlightRecords: z.number().int().min(1).max(10_000_000).default(IN_FLIGHT_DEFAULTS.records),
  /** Bytes of records queued or being written before the loop waits. @default 67108864 (64 MiB) */
  maxInFlightBytes: z.number().int().min(1024).default(IN_FLIGHT_DEFAULTS.bytes),
};
/** Kafka sinks gather records for this long before a send that is not full, when none is in flight (ms). @default 5 */
const lingerMs = duration({ positive: false }).default(5);

const sink = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('stdout'), ...inFlight }),
  /** append: keep the file's lines. @default true for a kafka source (a restart resumes), false otherwise */
  z.strictObject({ type: z.literal('file'), path: z.string().min(1), append: z.boolean().optional(), ...inFlight }),
  z.strictObject({
    type: z.literal('kafka'),
    topic: z.string().min(1),
    brokers: z.array(z.string()).optional(),
    lingerMs,
    /**
     * Results go out in each partition's checkpoint transaction (with the changelog): a
     * read_committed consumer sees every result exactly once, at the cost of latency up to
     * checkpoint.intervalMs. Needs a Kafka source with the changelog on, on the same cluster.
     * @default false (at-least-once, as soon as a result is produced)
     */
    exactlyOnce: z.boolean().default(false),
    ...inFlight,
  }),
  z.strictObject({ type: z.literal('postgres'), url: z.string().min(1), table: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).default('window_results'), ...inFlight }),
]);

const deadLetter = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('file'), path: z.string().min(1), append: z.boolean().optional(), ...inFlight }),
  z.strictObject({ type: z.literal('stdout'), ...inFlight }),
  z.strictObject({ type: z.literal('stderr'), ...inFlight }),
  z.strictObject({ type: z.literal('kafka'), topic: z.string().min(1), brokers: z.array(z.string()).optional(), lingerMs, ...inFlight }),
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
      /**
       * When every partition of the source has been idle for `source.idleTimeoutMs`,
       * W = max(W, wall clock - maxOutOfOrdernessMs) for as long as they stay idle, so
       * the last windows of a quiet live stream fire. Events judged after that are
       * judged against the advanced W (too late ones are dead-lettered `late`). Applies
       * to a Kafka source and to unbounded embedded ones (stdin, a generator without
       * `count`). Leave it off when replaying old data: the wall clock is far ahead of
       * its event time, so a pause would make everything after it late.
       * @default false
       */
      idleAdvance: z.boolean().default(false),
    })
    .prefault({}),
  aggregations: z.array(aggregation).min(1, 'needs at least one aggregation'),
  /** Where results go; at least one. @default [{ type: stdout }] */
  sinks: z.array(sink).min(1, 'needs at least one sink (results would go nowhere)').prefault([{ type: 'stdout' }]),
  /** @default { type: file, path: dead-letters.jsonl } */
  deadLetter: deadLetter.prefault({ type: 'file', path: 'dead-letters.jsonl' }),
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
  /**
   * A Kafka source's state follows its partitions through a compacted changelog topic:
   * each checkpoint of a partition is one Kafka transaction holding its changed windows
   * (to the changelog partition with the same number), where it stands, and its input
   * offset; an instance assigned a partition restores it from there (its local state
   * is a cache of it). `enabled: false` keeps state and offsets local to each instance.
   */
  changelog: z
    .strictObject({
      /** @default true (for a Kafka source; other sources have no changelog) */
      enabled: z.boolean().default(true),
      /** @default "<source.groupId>-changelog" */
      topic: z.string().min(1).optional(),
      /** Create the topic (compacted, the input topic's partition count) when it is missing. @default true */
      create: z.boolean().default(true),
      /** An instance that dies mid-transaction holds the partition's readers back at most this long (ms). @default 60000 */
      transactionTimeoutMs: duration({ positive: true }).default(60_000),
      /**
       * How often a checkpoint also brings the local state up to date (ms): the cache an
       * instance restores its own partitions from, reading only the changelog after it.
       * Checkpoints in between commit to the changelog alone, which costs less disk
       * work; a restart after a crash then reads up to this much more of the changelog.
       * A stop, a rebalance and the end of the input always update it. 0: every checkpoint.
       * @default 10000
       */
      cacheIntervalMs: duration({ positive: false }).default(10_000),
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
      /**
       * Nice value (Linux) of the threads that do a checkpoint's background work: the
       * state thread, RocksDB's flushes and compactions, the changelog thread. They
       * yield to the operator loop when both want a core (src/priority.ts). 0: as the
       * loop. @default 10
       */
      backgroundNice: z.number().int().min(0).max(19).default(10),
      /**
       * Where the state backend and the changelog's Kafka clients run: `own`, threads of
       * their own (a checkpoint's background work takes no time from the loop); `main`,
       * the loop's thread (no threads to start); `auto`, `main` for a bounded Kafka read
       * whose consumer is on the main thread (one core: source.consumerThread), where
       * the run's total time counts and the threads would only take turns with the
       * loop, `own` otherwise. @default auto
       */
      backgroundThreads: z.enum(['auto', 'own', 'main']).default('auto'),
    })
    .prefault({}),
  /**
   * Retries of sink writes (results and dead letters) that fail transiently (a sink
   * unreachable, a timeout, a failover): delays initialDelayMs, x factor, ... (100, 200,
   * 400 ms, ...), each at most maxDelayMs, for up to maxElapsedMs. Meanwhile the sink's
   * queue fills and then holds the loop back (back pressure), so nothing is read that
   * cannot be delivered. A result write that outlasts them dead-letters its results
   * (reason `undeliverable`, `retry_count` = retries made); a dead-letter write that does
   * stops the run (src/sinks/delivery.ts).
   */
  retry: z
    .strictObject({
      /** Most retries after the first attempt; 0 = never retry. @default unbounded: maxElapsedMs decides */
      retries: z.number().int().min(0).max(1_000_000).optional(),
      /** Delay before the first retry, ms. @default 100 */
      initialDelayMs: duration({ positive: false }).default(100),
      /** Each delay is the previous one times this (1 = constant delay). @default 2 */
      factor: z.number().min(1).max(10).default(2),
      /** Upper bound of one delay, ms. @default 5000 */
      maxDelayMs: duration({ positive: true }).default(5_000),
      /** No retry starts this long (ms) after a write's first attempt: then its results are dead-lettered `undeliverable`. @default 300000 (5 minutes) */
      maxElapsedMs: duration({ positive: false }).default(300_000),
    })
    .prefault({}),
  /**
   * Structured JSON-lines logs on stderr (start, finish, retries, errors), secrets
   * masked. Without `log`, `weir run` writes warnings only, as plain
   * `weir: warning: ...` lines (a wrong eventTime.field or groupBy path, a key read
   * from two partitions), its one-line error, its summary line and, on a terminal,
   * progress. `log: {}` logs JSON lines at "info".
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
  const ssl = cfg.source.type === 'kafka' ? cfg.source.ssl : false;
  if (typeof ssl === 'object' && (ssl.cert === undefined) !== (ssl.key === undefined))
    throw new ConfigError(`${origin}: source.ssl: cert and key go together (a client certificate needs its private key)`);
  if (cfg.state.backend === undefined) cfg.state.backend = cfg.source.type === 'kafka' ? 'rocksdb' : 'memory';
  if (cfg.source.type === 'kafka') cfg.changelog.topic ??= `${cfg.source.groupId}-changelog`;
  cfg.sinks.forEach((s, i) => {
    if (s.type !== 'kafka' || !s.exactlyOnce) return;
    if (cfg.source.type !== 'kafka' || !cfg.changelog.enabled)
      throw new ConfigError(`${origin}: sinks[${i}].exactlyOnce: needs a Kafka source with the changelog on (results go out in its checkpoint transactions)`);
    if (s.brokers !== undefined && s.brokers.length > 0 && s.brokers.join(',') !== cfg.source.brokers.join(','))
      throw new ConfigError(`${origin}: sinks[${i}].brokers: an exactlyOnce sink writes in the source cluster's transactions; leave brokers out`);
  });
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
