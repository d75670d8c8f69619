// The cores a process may use: the CPU affinity, less a cgroup CPU quota (src/cores.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { cgroupCpuQuota, usableCores } from '../src/cores';

/** A file system of these files only. */
const files = (f: Record<string, string>) => (path: string): string | undefined => f[path];

test('cgroup v2: cpu.max at the process\'s own path, else at the root; "max" is no quota', () => {
  assert.equal(cgroupCpuQuota(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '100000 100000\n' })), 1);
  assert.equal(cgroupCpuQuota(files({ '/proc/self/cgroup': '0::/kubepods/pod1/c1\n', '/sys/fs/cgroup/kubepods/pod1/c1/cpu.max': '150000 100000\n', '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), 1.5);
  // A cgroup namespace: the process's path is not under the mount, its root is its own cgroup.
  assert.equal(cgroupCpuQuota(files({ '/proc/self/cgroup': '0::/kubepods/pod1/c1\n', '/sys/fs/cgroup/cpu.max': '50000 100000\n' })), 0.5);
  assert.equal(cgroupCpuQuota(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), undefined);
});

test('cgroup v1: cpu.cfs_quota_us over cpu.cfs_period_us in the cpu hierarchy; -1 is no quota', () => {
  const self = '12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n';
  assert.equal(cgroupCpuQuota(files({ '/proc/self/cgroup': self, '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '200000\n', '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n' })), 2);
  assert.equal(cgroupCpuQuota(files({ '/proc/self/cgroup': self, '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '100000\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })), 1);
  assert.equal(cgroupCpuQuota(files({ '/proc/self/cgroup': '4:cpu:/\n', '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })), undefined);
});

test('nothing readable: no quota; usableCores is between 1 and the affinity\'s count', () => {
  assert.equal(cgroupCpuQuota(files({})), undefined);
  assert.equal(cgroupCpuQuota(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'garbage' })), undefined);
  const cores = usableCores();
  assert.ok(cores >= 1 && cores <= availableParallelism(), String(cores));
  const quota = cgroupCpuQuota();
  assert.equal(cores, quota === undefined ? availableParallelism() : Math.max(1, Math.min(availableParallelism(), Math.floor(quota))));
});
