// The `weir` command.
// First: a Kafka consumer on this thread decodes with Weir's decoder (source.consumerThread).
import './sources/consumer-on-main';
import { loadConfig, maskSecrets, type Config } from './config';
import { tuneHeap } from './heap';
import { eachOption } from './options';
import { ConfigError, WeirError, isOutputClosed, toWeirError } from './errors/errors';
import { runEmbedded, summaryLine, type RunSummary } from './runner';
import { REDELIVER_HELP, redeliverCommand } from './redeliver';

/**
 * The bound on a graceful stop: from the first SIGTERM/SIGINT, finishing the batch in
 * flight, flushing and closing the sinks and the source must take at most this long,
 * or weir exits 1. Below Kubernetes' default terminationGracePeriodSeconds (30 s), so
 * weir, not SIGKILL, decides the exit code.
 */
export const STOP_BOUND_MS = 10_000;

// require, not import: package.json lies outside rootDir, and tsc must not copy it into dist/.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION: string = (require('../../package.json') as { version: string }).version;

const MAIN_HELP = `weir ${VERSION}: event-time stream processor for LLM metric events

Usage:
  weir run --config FILE [options]   process a source to its end (or until stopped)
  weir redeliver --config FILE --from FILE [--rest FILE]
                                     write undeliverable dead letters' results to their sink again
  weir help [run|redeliver]          this help, or the help of a command
  weir --version

Run 'weir run --help' for every option of run.
`;

const RUN_HELP = `Usage: weir run --config FILE [options]

Reads events from the configured source, windows and aggregates them by event
time, and writes results to the sinks and rejected events to the dead-letter queue.
A bounded source (a file, a generator with a count) ends with every open window
firing, and exit code 0.

Options:
  -c, --config FILE      config file, YAML or JSON (required)
      --batch-size N     events per batch handed to the WebAssembly core (default 4096)
      --instance-id ID   processor_instance of dead letters (default $WEIR_INSTANCE_ID or processor-1)
      --progress         show progress on stderr even when it is not a terminal
      --no-progress      never show progress (default: shown on a terminal only)
      --print-config     print the validated config (secrets masked) and exit
  -h, --help             this help

SIGTERM or SIGINT stops the run: no more events are read, results and dead
letters written so far are flushed, and weir exits 0 (open windows do not fire).
A stop that takes over ${STOP_BOUND_MS / 1000} s exits 1; a second signal exits 130 at once.

Exit codes: 0 done or stopped, 1 failure while running, 2 bad usage or config,
130 stopped at once by a second signal.
`;

interface RunArgs {
  config?: string;
  batchSize?: number;
  instanceId?: string;
  progress?: boolean;
  printConfig: boolean;
  help: boolean;
}

function parseRunArgs(argv: string[]): RunArgs {
  const args: RunArgs = { printConfig: false, help: false };
  eachOption(argv, (flag, value, a) => {
    switch (flag) {
      case '-c':
      case '--config':
        args.config = value();
        break;
      case '--batch-size': {
        const v = value();
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > 65536) throw new ConfigError(`--batch-size: must be a whole number from 1 to 65536 (got "${v}")`);
        args.batchSize = n;
        break;
      }
      case '--instance-id':
        args.instanceId = value();
        break;
      case '--progress':
        args.progress = true;
        break;
      case '--no-progress':
        args.progress = false;
        break;
      case '--print-config':
        args.printConfig = true;
        break;
      case '-h':
      case '--help':
        args.help = true;
        break;
      default:
        throw new ConfigError(`unknown option ${a} (see 'weir run --help')`);
    }
  });
  return args;
}

async function run(argv: string[]): Promise<number> {
  const args = parseRunArgs(argv);
  if (args.help) {
    process.stdout.write(RUN_HELP);
    return 0;
  }
  if (args.config === undefined) throw new ConfigError(`weir run needs --config FILE (see 'weir run --help')`);
  const cfg: Config = loadConfig(args.config);
  if (args.batchSize !== undefined) cfg.processing.batchSize = args.batchSize;
  if (args.instanceId !== undefined) cfg.processing.instanceId = args.instanceId;
  if (args.printConfig) {
    process.stdout.write(JSON.stringify(maskSecrets(cfg), null, 2) + '\n');
    return 0;
  }
  tuneHeap();
  const summary = await runStoppable(cfg, args.progress);
  // Always, terminal or not: a run that dead-letters everything must not look like a quiet success.
  process.stderr.write(`${summaryLine(summary)}\n`);
  return 0;
}

/** Runs with SIGTERM and SIGINT wired to a graceful stop (the second one exits 130 at once). */
async function runStoppable(cfg: Config, progress: boolean | undefined): Promise<RunSummary> {
  const controller = new AbortController();
  let bound: NodeJS.Timeout | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      process.stderr.write(`weir: ${signal} again: exiting now\n`);
      process.exit(130);
    }
    controller.abort();
    bound = setTimeout(() => {
      process.stderr.write(`weir: stop did not finish within ${STOP_BOUND_MS / 1000} s: exiting\n`);
      process.exit(1);
    }, STOP_BOUND_MS);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    return await runEmbedded(cfg, { signal: controller.signal, ...(progress === undefined ? {} : { progress }) });
  } finally {
    // Unreferenced, the timer no longer holds the process open, but it still fires (exit 1)
    // if something else does: a stop that resolved and then hangs is a hang too.
    bound?.unref();
    // After a stop the handlers stay: a second signal still means "exit now" (130).
    if (!controller.signal.aborted) {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    }
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(rest[0] === 'run' ? RUN_HELP : rest[0] === 'redeliver' ? REDELIVER_HELP : MAIN_HELP);
        return cmd === undefined ? 2 : 0;
      case '-v':
      case '--version':
      case 'version':
        process.stdout.write(`${VERSION}\n`);
        return 0;
      case 'run':
        return await run(rest);
      case 'redeliver':
        return await redeliverCommand(rest);
      default:
        throw new ConfigError(`unknown command "${cmd}" (see 'weir --help')`);
    }
  } catch (e) {
    // `weir run | head`: the reader has what it wanted.
    if (isOutputClosed(e)) return 0;
    const err = toWeirError(e);
    if (err instanceof ConfigError) {
      process.stderr.write(`weir: ${err.message}\n`);
      return 2;
    }
    // A user's mistake or a failing dependency (a broker, a database): one line. Only our own bugs get a stack.
    if (err.domain === 'user' || err.domain === 'external') {
      process.stderr.write(`weir: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`weir: internal error: ${err.message}\n${err instanceof WeirError && err.cause instanceof Error ? (err.cause.stack ?? '') : ''}\n`);
    return 1;
  }
}
