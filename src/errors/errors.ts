/**
 * Where a failure comes from: the user's input or config, something outside
 * Weir (a broker, a disk), or Weir itself (a bug, corrupt state).
 */
export type ErrorDomain = 'user' | 'external' | 'internal';

/** The one error base class: every error Weir raises or converts is one of these. */
export class WeirError extends Error {
  readonly domain: ErrorDomain;
  /** Whether doing the same thing again may succeed (read by retry()). */
  readonly retriable: boolean;

  constructor(message: string, opts: { domain: ErrorDomain; retriable?: boolean; cause?: unknown }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.domain = opts.domain;
    this.retriable = opts.retriable ?? false;
  }
}

/** A config file or option that is wrong: reported as one line, exit code 2. */
export class ConfigError extends WeirError {
  constructor(message: string, cause?: unknown) {
    super(message, { domain: 'user', cause });
  }
}

/** Input that cannot be read at all (a missing file): reported as one line. */
export class InputError extends WeirError {
  constructor(message: string, cause?: unknown) {
    super(message, { domain: 'user', cause });
  }
}

/**
 * The reader of an output went away (`weir run | head`: EPIPE). Not a failure: nothing
 * is left to read what follows, so the run ends as it would at the end of its input,
 * quietly, with exit code 0 (a shell's tools do the same).
 */
export class OutputClosedError extends WeirError {
  constructor(message: string, cause?: unknown) {
    super(message, { domain: 'user', cause });
  }
}

/** Whether `e`, or an error it was caused by, is an OutputClosedError. */
export function isOutputClosed(e: unknown): boolean {
  for (let c = e, depth = 0; c instanceof Error && depth < 10; c = c.cause, depth++) if (c instanceof OutputClosedError) return true;
  return false;
}

/** What went wrong, in words: an Error's message, or anything else as a string. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Converts anything thrown into a WeirError, once, at the boundary that caught it. */
export function toWeirError(e: unknown): WeirError {
  if (e instanceof WeirError) return e;
  if (e instanceof Error) return new WeirError(e.message, { domain: 'internal', cause: e });
  return new WeirError(String(e), { domain: 'internal' });
}

/**
 * A sink refused these records themselves (a row its table rejects, a message larger than
 * the topic allows), not because it is unreachable or broken: other records still go
 * through, so the refused ones are dead-lettered and the run goes on. Permanent: never
 * retried. The domain stays the sink's ('external').
 */
export class RecordsRejectedError extends WeirError {
  constructor(message: string, cause?: unknown) {
    super(message, { domain: 'external', retriable: false, cause });
  }
}

/**
 * A failure that ends the run on purpose: the dead-letter queue cannot take what must
 * go there, or a result sink is unusable. The runner stops gracefully without a
 * checkpoint past the failure; a restart recovers from the last checkpoint. The domain
 * is the cause's, so a user's mistake (an unwritable path) is reported as one line.
 */
export class FatalError extends WeirError {
  constructor(message: string, cause: unknown) {
    super(message, { domain: cause instanceof WeirError ? cause.domain : 'internal', retriable: false, cause });
  }
}
