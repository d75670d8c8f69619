// How many cores this process may use: os.availableParallelism() (the CPU affinity:
// `taskset`, a cpuset), less where a cgroup CPU quota allows fewer (a Kubernetes CPU
// limit, `docker run --cpus`). Node.js 20's libuv reads the affinity only; libuv 1.49
// and later read the quota too, as this does, rounding it down (1.5 cores: 1).
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** A file's text, or undefined where it cannot be read. */
function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}

/** quota / period, or undefined for no quota ("max", -1) or text that is not one. */
function ratio(quota: string | undefined, period: string | undefined): number | undefined {
  const q = Number(quota?.trim()), p = Number(period?.trim());
  return Number.isFinite(q) && q > 0 && Number.isFinite(p) && p > 0 ? q / p : undefined;
}

/**
 * The CPU quota of this process's cgroup in cores (1.5: one and a half), undefined
 * where there is none or it cannot be read. cgroup v2: `cpu.max` ("quota period" or
 * "max period"); v1: `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: none). Looked up
 * at the process's own cgroup path (/proc/self/cgroup), then at the root of the
 * hierarchy (what a container with its own cgroup namespace sees). `read` is for tests.
 */
export function cgroupCpuQuota(read: (path: string) => string | undefined = readOrUndefined): number | undefined {
  const lines = (read('/proc/self/cgroup') ?? '').split('\n');
  for (const line of lines) {
    const first = line.indexOf(':'), second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second), path = line.slice(second + 1).replace(/\/$/, '');
    if (line.startsWith('0::')) {
      for (const dir of [`/sys/fs/cgroup${path}`, '/sys/fs/cgroup']) {
        const max = read(`${dir}/cpu.max`);
        if (max === undefined) continue;
        const [quota, period] = max.trim().split(/\s+/);
        return ratio(quota, period);
      }
    } else if (controllers.split(',').includes('cpu')) {
      for (const dir of [`/sys/fs/cgroup/${controllers}${path}`, `/sys/fs/cgroup/cpu${path}`, `/sys/fs/cgroup/${controllers}`, '/sys/fs/cgroup/cpu']) {
        const quota = read(`${dir}/cpu.cfs_quota_us`);
        if (quota === undefined) continue;
        return ratio(quota, read(`${dir}/cpu.cfs_period_us`));
      }
    }
  }
  return undefined;
}

/** Cores this process may use: at least 1. */
export function usableCores(): number {
  const quota = cgroupCpuQuota();
  const cores = availableParallelism();
  return quota === undefined ? cores : Math.max(1, Math.min(cores, Math.floor(quota)));
}
