// A real read-only file system for tests: a read-only bind mount of a fresh directory,
// unmounted when the test file ends. It needs root and mount(8); where either is
// missing, the reason to skip instead.
import { after } from 'node:test';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const mounts: string[] = [];
after(() => {
  for (const m of mounts) spawnSync('umount', [m]);
});

/** The mount point of a read-only directory holding the (empty) directories `dirs`, or why there is none. */
export function readOnlyDir(...dirs: string[]): string | { skip: string } {
  if (process.getuid?.() !== 0) return { skip: 'needs root for mount --bind' };
  const rw = mkdtempSync(join(tmpdir(), 'weir-rw-'));
  const ro = mkdtempSync(join(tmpdir(), 'weir-ro-'));
  for (const d of dirs) mkdirSync(join(rw, d), { recursive: true });
  const bind = spawnSync('mount', ['--bind', rw, ro], { encoding: 'utf8' });
  if (bind.status !== 0) return { skip: `mount --bind failed: ${bind.stderr.trim()}` };
  mounts.push(ro);
  const remount = spawnSync('mount', ['-o', 'remount,bind,ro', ro], { encoding: 'utf8' });
  if (remount.status !== 0) return { skip: `mount -o remount,bind,ro failed: ${remount.stderr.trim()}` };
  return ro;
}
