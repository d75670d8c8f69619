// `weir redeliver`: writes the results of `undeliverable` dead letters back to the sink
// that did not take them, once it takes writes again. Every result sink keeps the latest
// result per window (a file's last line, a compacted topic's last message, PostgreSQL's
// upsert), so writing a result again is safe; PostgreSQL also keeps a newer row.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfig, type Config } from './config';
import { eachOption } from './options';
import { ConfigError, InputError, RecordsRejectedError, toWeirError } from './errors/errors';
import { retry, type RetryOptions } from './errors/retry';
import type { RecordSink } from './sinks/jsonl';
import { openResultSink } from './runner';
import { ResultBatch } from './pipeline/results';
import type { WindowResult } from './pipeline/types';

export const REDELIVER_HELP = `Usage: weir redeliver --config FILE --from FILE [--rest FILE]

Writes the results of dead letters with reason "undeliverable" back to the
sink named by their "sink" field (sinks[i] of the config), retrying as the
config's "retry" says until that sink takes writes. A result never replaces a
newer one of the same window in a PostgreSQL sink; in a file or Kafka sink the
redelivered result is the last one written for its window (see the README).

Options:
  -c, --config FILE   the config whose sinks the dead letters name (required)
      --from FILE     dead-letter JSON-lines file to read (required; left unchanged)
      --rest FILE     new file for the dead letters not redelivered: other reasons,
                      unknown sinks, and results a sink still refused (default: none,
                      they stay in the --from file)
  -h, --help          this help

Prints "redelivered N, left M" on stderr. Exit codes: 0 every undeliverable
result was written, 1 some could not be, 2 bad usage or config.
`;

/** Results per write: a PostgreSQL statement's worth, a Kafka batch. */
const BATCH = 1000;

export interface RedeliverOptions {
  /** Dead-letter JSON-lines file. */
  from: string;
  /** New file for the lines not redelivered; none: they are only counted. */
  rest?: string;
  /** Waits between retries (tests inject one that returns at once). @default a timer */
  sleep?: RetryOptions['sleep'];
}

export interface RedeliverSummary {
  redelivered: number;
  /** Dead letters not redelivered (other reasons, unknown sinks, refused or unwritable results). */
  left: number;
  /** Undeliverable results that a sink could still not take (counted in `left` too). */
  failed: number;
  /** Why, one message per sink that did not take them all. */
  errors: string[];
}

interface Candidate {
  line: string;
  result: WindowResult;
}

function isResult(v: unknown): v is WindowResult {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Partial<WindowResult>;
  return (
    typeof r.name === 'string' && typeof r.key === 'string' && typeof r.emittedAt === 'number' &&
    typeof r.window === 'object' && r.window !== null && typeof r.window.start === 'number' && typeof r.window.end === 'number' &&
    typeof r.results === 'object' && r.results !== null
  );
}

/** `sinks[i]` of an undeliverable dead letter whose result can be written again, or undefined. */
function candidate(line: string, sinks: number): { sink: number; result: WindowResult } | undefined {
  let d: unknown;
  try {
    d = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof d !== 'object' || d === null) return undefined;
  const { reason, sink, original_event: original } = d as { reason?: unknown; sink?: unknown; original_event?: unknown };
  if (reason !== 'undeliverable' || typeof sink !== 'string' || typeof original !== 'string') return undefined;
  const m = /^sinks\[(\d+)\]$/.exec(sink);
  if (m === null || Number(m[1]) >= sinks) return undefined;
  let result: unknown;
  try {
    result = JSON.parse(original);
  } catch {
    return undefined;
  }
  return isResult(result) ? { sink: Number(m[1]), result } : undefined;
}

/** Writes `todo` to sinks[i]; returns the lines it could not write and why. */
async function toSink(cfg: Config, i: number, todo: readonly Candidate[], retryOpts: RetryOptions): Promise<{ left: string[]; error?: string }> {
  const name = `sinks[${i}]`;
  const named = (e: unknown): string => {
    const msg = toWeirError(e).message;
    return msg.includes(name) ? msg : `${name}: ${msg}`;
  };
  let sink: RecordSink<ResultBatch>;
  try {
    // Opened to add to what it holds: a file sink is always appended to.
    sink = await retry(() => openResultSink(cfg, i, true), retryOpts);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    return { left: todo.map((c) => c.line), error: named(e) };
  }
  const left: string[] = [];
  let error: string | undefined;
  try {
    for (let at = 0; at < todo.length; at += BATCH) {
      const batch = todo.slice(at, at + BATCH);
      try {
        const results = ResultBatch.fromObjects(batch.map((c) => c.result));
        await retry(() => Promise.resolve(sink.write([results])), retryOpts);
        continue;
      } catch (e) {
        if (!(e instanceof RecordsRejectedError)) {
          // Unreachable after every retry, or unusable: nothing more goes to this sink.
          error = named(e);
          left.push(...todo.slice(at).map((c) => c.line));
          break;
        }
      }
      // Some results refused: find which, in order, so the last of a window is still written last.
      for (const c of batch) {
        try {
          const one = ResultBatch.fromObjects([c.result]);
          await retry(() => Promise.resolve(sink.write([one])), retryOpts);
        } catch (e) {
          error ??= named(e);
          left.push(c.line);
        }
      }
    }
    await sink.flush?.();
  } catch (e) {
    error ??= named(e);
  } finally {
    await sink.close().catch((e: unknown) => void (error ??= named(e)));
  }
  return error === undefined ? { left } : { left, error };
}

/** Redelivers the undeliverable results of `opts.from` to the sinks of `cfg`. */
export async function redeliver(cfg: Config, opts: RedeliverOptions): Promise<RedeliverSummary> {
  if (opts.rest !== undefined) {
    if (resolve(opts.rest) === resolve(opts.from)) throw new ConfigError(`--rest: must not be the --from file (${opts.from}): it is read, never changed`);
    // A new file: an older one may hold dead letters nothing else has.
    if (existsSync(opts.rest)) throw new ConfigError(`--rest: ${opts.rest} exists; name a new file`);
  }
  let text: string;
  try {
    text = readFileSync(opts.from, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? `--from: dead-letter file not found: ${opts.from}` : `--from: cannot read ${opts.from}: ${(e as Error).message}`);
  }
  const bySink = new Map<number, Candidate[]>();
  const rest: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const c = candidate(line, cfg.sinks.length);
    if (c === undefined) rest.push(line);
    else {
      const list = bySink.get(c.sink) ?? [];
      list.push({ line, result: c.result });
      bySink.set(c.sink, list);
    }
  }
  const retryOpts: RetryOptions = { ...cfg.retry, ...(opts.sleep === undefined ? {} : { sleep: opts.sleep }) };
  let redelivered = 0, failed = 0;
  const errors: string[] = [];
  for (const [i, todo] of [...bySink].sort((a, b) => a[0] - b[0])) {
    const r = await toSink(cfg, i, todo, retryOpts);
    redelivered += todo.length - r.left.length;
    failed += r.left.length;
    rest.push(...r.left);
    if (r.error !== undefined) errors.push(r.error);
  }
  if (opts.rest !== undefined && rest.length > 0) {
    try {
      writeFileSync(opts.rest, rest.join('\n') + '\n', { flag: 'wx' });
    } catch (e) {
      throw new InputError(`--rest: cannot write ${opts.rest}: ${(e as Error).message}; the dead letters stay in ${opts.from}`);
    }
  }
  return { redelivered, left: rest.length, failed, errors };
}

interface RedeliverArgs {
  config?: string;
  from?: string;
  rest?: string;
  help: boolean;
}

function parseArgs(argv: string[]): RedeliverArgs {
  const args: RedeliverArgs = { help: false };
  eachOption(argv, (flag, value, a) => {
    switch (flag) {
      case '-c':
      case '--config':
        args.config = value();
        break;
      case '--from':
        args.from = value();
        break;
      case '--rest':
        args.rest = value();
        break;
      case '-h':
      case '--help':
        args.help = true;
        break;
      default:
        throw new ConfigError(`unknown option ${a} (see 'weir redeliver --help')`);
    }
  });
  return args;
}

/** The `weir redeliver` command: its exit code. */
export async function redeliverCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.help) {
    process.stdout.write(REDELIVER_HELP);
    return 0;
  }
  if (args.config === undefined) throw new ConfigError(`weir redeliver needs --config FILE (see 'weir redeliver --help')`);
  if (args.from === undefined) throw new ConfigError(`weir redeliver needs --from FILE, a dead-letter file (see 'weir redeliver --help')`);
  const cfg = loadConfig(args.config);
  const s = await redeliver(cfg, { from: args.from, ...(args.rest === undefined ? {} : { rest: args.rest }) });
  const where = s.left === 0 ? '' : args.rest === undefined ? ` (still in ${args.from})` : ` (written to ${args.rest})`;
  for (const e of s.errors) process.stderr.write(`weir: ${e}\n`);
  process.stderr.write(`redelivered ${s.redelivered}, left ${s.left}${where}${s.failed > 0 ? `, of which ${s.failed} undeliverable result(s) a sink still did not take` : ''}\n`);
  return s.failed > 0 ? 1 : 0;
}
