// Structured logs: one JSON object per line on stderr (stdout may carry results).
// Secrets never reach a log line: known secret fields are redacted by path, any
// field named like a password is masked, and credentials in URLs (`user:pass@`)
// are masked in every string, the message included.
import pino, { type Logger } from 'pino';
import type { Config } from './config';

export type { Logger };

/** The mask written in place of a secret (the same as maskSecrets in config.ts). */
export const MASK = '***';

/**
 * Paths redacted by pino, for a config logged as `config` or its parts logged
 * directly. pino's wildcards match one level, so each depth is listed.
 */
export const REDACT_PATHS: readonly string[] = [
  'password',
  '*.password',
  '*.*.password',
  '*.*.*.password',
  'sasl.password',
  '*.sasl.password',
  'config.source.sasl.password',
  'source.sasl.password',
];

// `scheme://user:pass@host`: keep the user, mask the password (as maskSecrets does).
const URL_CREDENTIALS = /(\/\/[^:/@\s]*):([^@\s/]*)@/g;
const SECRET_KEY = /pass(word)?|secret|token/i;

/** `s` with the password of every URL in it replaced by ***. */
export function maskUrlCredentials(s: string): string {
  return s.replace(URL_CREDENTIALS, `$1:${MASK}@`);
}

/** A copy of `v` with URL passwords masked in every string and password-like fields masked. */
function maskDeep(v: unknown, seen: WeakSet<object>, depth: number): unknown {
  if (typeof v === 'string') return maskUrlCredentials(v);
  if (typeof v !== 'object' || v === null) return v;
  if (seen.has(v) || depth > 12) return '[…]';
  seen.add(v);
  if (v instanceof Error) v = pino.stdSerializers.err(v);
  if (Array.isArray(v)) return v.map((x) => maskDeep(x, seen, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    // passwordEnv names a variable; it is not the secret itself.
    out[k] = SECRET_KEY.test(k) && k !== 'passwordEnv' && typeof x === 'string' ? MASK : maskDeep(x, seen, depth + 1);
  }
  return out;
}

export interface LoggerOptions {
  /** Where the JSON lines go (tests pass a stream). @default stderr, written synchronously */
  destination?: NodeJS.WritableStream;
}

/**
 * Without a `log` section: warnings only, as plain `weir: warning: ...` lines (a
 * person reads them; errors reach them as the CLI's one line, not twice). The
 * per-step lines about dead letters (`kind: permanent`) are left out: one per
 * batch would bury the rest, and the summary line counts them by reason.
 */
function plainWarnings(out: NodeJS.WritableStream): pino.DestinationStream {
  return {
    write(line: string): void {
      const entry = JSON.parse(line) as { level?: string; msg?: string; kind?: string };
      if (entry.level === 'warn' && entry.kind !== 'permanent') out.write(`weir: warning: ${entry.msg ?? ''}\n`);
    },
  };
}

/**
 * A logger at the config's `log.level`, writing JSON lines with `level` and `msg`.
 * Without a `log` section it writes warnings only (level `warn`), each as one
 * plain line `weir: warning: ...`: mistakes a run survives (a wrong field name)
 * are never silent.
 */
export function createLogger(cfg: Pick<Config, 'log'>, opts: LoggerOptions = {}): Logger {
  // Synchronous on fd 2: a log line written just before process.exit is not lost.
  const fd2 = (): NodeJS.WritableStream => pino.destination({ fd: 2, sync: true }) as unknown as NodeJS.WritableStream;
  const destination = cfg.log === undefined ? plainWarnings(opts.destination ?? fd2()) : (opts.destination ?? fd2());
  return pino(
    {
      name: 'weir',
      level: cfg.log?.level ?? 'warn',
      redact: { paths: [...REDACT_PATHS], censor: MASK },
      formatters: {
        // Level as its name ("info"), not pino's number: readable by people and log shippers alike.
        level: (label) => ({ level: label }),
        log: (obj) => maskDeep(obj, new WeakSet(), 0) as Record<string, unknown>,
      },
      hooks: {
        // The message (and printf-style arguments) bypass formatters.log.
        logMethod(args, method) {
          const masked = args.map((a) => (typeof a === 'string' ? maskUrlCredentials(a) : a)) as Parameters<typeof method>;
          method.apply(this, masked);
        },
      },
    },
    destination,
  );
}
