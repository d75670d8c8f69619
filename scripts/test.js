#!/usr/bin/env node
// `npm test`: runs every compiled test file (dist/test/**/*.test.js) with node's test runner.
// Test files that need the Kafka broker live under test/kafka/; the broker is started
// for them (scripts/kafka-up.sh) only when they exist and WEIR_SKIP_KAFKA is not set:
// a broker already running is used as it is, else one starts on an empty data dir.
// Test files that read WEIR_TEST_REDIS_URL or WEIR_TEST_POSTGRES_URL get a server
// there: the one that answers at that address (default 127.0.0.1:6379 and :5432), or
// a throwaway one on a free port that this run starts and ends (scripts/services.js).
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const { readdirSync, existsSync, readFileSync } = require('node:fs');
const { ensureServices } = require('./services');
const { join } = require('node:path');

const root = join(__dirname, '..');
function find(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? find(join(dir, e.name)) : e.name.endsWith('.test.js') ? [join(dir, e.name)] : [],
  );
}
const only = process.argv.slice(2);
let files = find(join(root, 'dist', 'test')).sort();
if (only.length > 0) files = files.filter((f) => only.some((o) => f.includes(o)));
if (files.length === 0) {
  console.error('no test files found under dist/test (did the build run?)');
  process.exit(1);
}
if (files.some((f) => f.includes(`${join('dist', 'test', 'kafka')}`)) && !process.env.WEIR_SKIP_KAFKA) {
  const up = spawnSync('bash', [join(root, 'scripts', 'kafka-up.sh'), '--fresh-if-down'], { stdio: 'inherit' });
  if (up.status !== 0) process.exit(up.status ?? 1);
}
async function main() {
const needed = ['WEIR_TEST_REDIS_URL', 'WEIR_TEST_POSTGRES_URL'].filter((name) => files.some((f) => readFileSync(f, 'utf8').includes(name)));
let services;
try {
  services = await ensureServices(needed);
} catch (e) {
  console.error(`npm test: ${e.message}`);
  process.exit(1);
}
if (services.started.length > 0) {
  console.error(`npm test: started ${services.started.map((x) => `${x.name} on 127.0.0.1:${x.port} (nothing answered at ${x.was})`).join(' and ')}, on throwaway data dirs, ended with the run`);
}
// kafkajs warns about its partitioner change on every producer; Weir sets a partitioner explicitly.
const env = { ...services.env, KAFKAJS_NO_PARTITIONER_WARNING: '1' };
// Bounds, so that a hang fails with a name instead of running CI out of time:
// one test file may take TEST_TIMEOUT_MS (the slowest, the exactly-once test with its
// 21 restarts, takes 2-3 min on a busy machine), the whole run RUN_DEADLINE_MS (it
// takes 6-8 min here), after which every process of the run (test files, the
// `weir run` children they spawned) is killed.
const TEST_TIMEOUT_MS = Number(process.env.WEIR_TEST_TIMEOUT_MS ?? 420_000);
const RUN_DEADLINE_MS = Number(process.env.WEIR_TEST_DEADLINE_MS ?? 20 * 60_000);
const child = spawn(process.execPath, ['--test', '--test-concurrency=2', `--test-timeout=${TEST_TIMEOUT_MS}`, ...files], {
  stdio: 'inherit', cwd: root, env, detached: true,
});
const killAll = (signal) => {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // the group is gone already
  }
};
const deadline = setTimeout(() => {
  console.error(`npm test: not done after ${Math.round(RUN_DEADLINE_MS / 1000)} s; killing the run (WEIR_TEST_DEADLINE_MS moves the bound)`);
  killAll('SIGKILL');
}, RUN_DEADLINE_MS);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => {
  killAll('SIGKILL');
  services.stop();
});
child.on('exit', (code, signal) => {
  clearTimeout(deadline);
  killAll('SIGKILL'); // a test file may have left a child behind
  services.cleanup().finally(() => process.exit(code ?? (signal ? 1 : 0)));
});
}
main();
