// What to do about a failure, decided in one place: retry it, dead-letter it, or stop.
import { FatalError, RecordsRejectedError, WeirError } from './errors';

/**
 * `transient`: doing the same thing again may succeed (network, timeouts, a broker
 * that is unavailable for now): retry with backoff.
 * `permanent`: this record, config or request can never succeed (deserialization,
 * validation): dead-letter it or report it, do not retry.
 * `critical`: Weir itself is in doubt (corrupt state, out of memory, a bug): stop.
 */
export type ErrorKind = 'transient' | 'permanent' | 'critical';

// Node errno codes that mean "the other side did not answer this time".
const TRANSIENT_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN']);

// Node has WebAssembly.RuntimeError; core/webassembly.d.ts declares only what the core uses.
const WasmRuntimeError = (globalThis as { WebAssembly?: { RuntimeError?: new () => Error } }).WebAssembly?.RuntimeError;

function codeOf(e: object): string | undefined {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Classifies anything thrown. A WeirError is judged by its own `retriable` and
 * `domain`; foreign errors by their errno code or kafkajs's `retriable` flag
 * (kafkajs marks its errors, see https://github.com/tulios/kafkajs/blob/master/src/errors.js).
 * What is not recognised is critical: an unknown failure must not be retried
 * or dropped silently.
 */
export function classify(e: unknown): ErrorKind {
  // Both keep their cause's domain, so their kind is said here: a sink refusing some
  // records is the records' problem; a FatalError ends the run whatever caused it.
  if (e instanceof RecordsRejectedError) return 'permanent';
  if (e instanceof FatalError) return 'critical';
  if (e instanceof WeirError) {
    if (e.retriable) return 'transient';
    return e.domain === 'user' ? 'permanent' : 'critical';
  }
  if (typeof e !== 'object' || e === null) return 'critical';
  // WebAssembly traps (unreachable, out-of-bounds access) mean the core's memory is in doubt.
  if (WasmRuntimeError !== undefined && e instanceof WasmRuntimeError) return 'critical';
  const code = codeOf(e);
  if (code !== undefined && TRANSIENT_CODES.has(code)) return 'transient';
  // Node 20 reports a refused connection to a name with several addresses as an AggregateError.
  if (e instanceof AggregateError && e.errors.length > 0 && e.errors.every((inner) => classify(inner) === 'transient')) return 'transient';
  if ((e as { retriable?: unknown }).retriable === true) return 'transient';
  if (e instanceof SyntaxError) return 'permanent';
  return 'critical';
}
