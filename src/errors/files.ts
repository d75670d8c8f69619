// File system failures said as a user reads them: what is wrong with which path.
// Node's messages name the syscall, and some mislead: on Node 20, mkdir({recursive:
// true}) under a read-only mount fails with ENOENT, and a file where a directory
// should be fails with EEXIST or ENOTDIR. Those codes are explained by looking at
// the closest ancestor of the path that exists.
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InputError, WeirError, messageOf, type ErrorDomain } from './errors';

function codeOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The closest existing ancestor of `path` (or the path itself), or undefined. */
function existingAncestor(path: string): string | undefined {
  let p = resolve(path);
  for (;;) {
    try {
      statSync(p);
      return p;
    } catch {
      const up = dirname(p);
      if (up === p) return undefined;
      p = up;
    }
  }
}

/** Why nothing can be created under `path`: the state of its closest existing ancestor. */
function whyNotCreatable(path: string): string | undefined {
  const at = existingAncestor(path);
  if (at === undefined) return undefined;
  if (!statSync(at).isDirectory()) return at === resolve(path) ? 'it is a file, not a directory' : `${at} is a file, not a directory`;
  try {
    accessSync(at, constants.W_OK);
  } catch (e) {
    const code = codeOf(e);
    if (code === 'EROFS') return `read-only file system (${at})`;
    if (code === 'EACCES' || code === 'EPERM') return `permission denied (${at} is not writable)`;
  }
  return undefined;
}

/** The reason (with its errno code where that does not mislead) and domain of a file system error at `path`; undefined when it is none. */
export function describeFileError(e: unknown, path: string): { reason: string; domain: ErrorDomain } | undefined {
  const code = codeOf(e);
  const user = (reason: string) => ({ reason, domain: 'user' as const });
  const external = (reason: string) => ({ reason, domain: 'external' as const });
  switch (code) {
    case 'EROFS':
      return user('read-only file system (EROFS)');
    case 'EACCES':
    case 'EPERM':
      return user(`permission denied (${code})`);
    case 'EISDIR':
      return user('it is a directory, not a file (EISDIR)');
    case 'ENOTDIR':
    case 'EEXIST':
    case 'ENOENT':
      return user(whyNotCreatable(path) ?? (code === 'ENOENT' ? 'no such file or directory (ENOENT)' : code === 'EEXIST' ? 'it exists and is not a directory (EEXIST)' : 'a part of the path is not a directory (ENOTDIR)'));
    case 'EIO':
      return external('input/output error: the disk or the file system failed (EIO)');
    case 'ENOSPC':
      return external('no space left on the device (ENOSPC)');
    case 'EDQUOT':
      return external('disk quota exceeded (EDQUOT)');
    case 'EMFILE':
    case 'ENFILE':
      return external(`too many open files (${code})`);
    default:
      return undefined;
  }
}

/**
 * `what` (e.g. "checkpoint.dir /data/cp") cannot be used: one line naming it and the
 * cause, an InputError when the cause is the user's (a read-only file system, a
 * directory where a file should be), external when a disk failed; anything that is
 * not a file system error keeps its message, in the `fallback` domain.
 */
export function fileError(e: unknown, what: string, path: string, fallback: ErrorDomain = 'internal'): WeirError {
  const d = describeFileError(e, path);
  if (d === undefined) return new WeirError(`${what}: ${messageOf(e)}`, { domain: fallback, cause: e });
  const message = `${what}: ${d.reason}`;
  return d.domain === 'user' ? new InputError(message, e) : new WeirError(message, { domain: d.domain, cause: e });
}
