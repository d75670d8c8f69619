// Redis and PostgreSQL for `npm test`, as scripts/kafka-up.sh is for Kafka: the
// address a test reads from WEIR_TEST_REDIS_URL / WEIR_TEST_POSTGRES_URL (default
// 127.0.0.1:6379 and postgres://postgres@127.0.0.1:5432/test) is probed; a server that
// answers is used as it is. When nothing answers, a throwaway one starts on a free
// port with an empty data directory under the system's temp dir (Debian's
// redis-server and postgresql, installed by scripts/ensure-apt.sh when missing), the
// variable is pointed at it for the tests, and stop() ends it and removes its data.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const { mkdtempSync, rmSync, chownSync, readdirSync } = require('node:fs');
const { createConnection, createServer } = require('node:net');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

const root = join(__dirname, '..');
const DEFAULTS = {
  WEIR_TEST_REDIS_URL: 'redis://127.0.0.1:6379',
  WEIR_TEST_POSTGRES_URL: 'postgres://postgres@127.0.0.1:5432/test',
};

/** Whether something accepts a TCP connection at host:port within 1 s. */
function answers(host, port) {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}

async function waitFor(host, port, what, child, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await answers(host, port))) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode} before it listened`);
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${host}:${port} within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function ensureApt(file, pkg) {
  const r = spawnSync('bash', [join(root, 'scripts', 'ensure-apt.sh'), file, pkg], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`cannot install ${pkg} (scripts/ensure-apt.sh)`);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
}

async function startRedis() {
  ensureApt('/usr/bin/redis-server', 'redis-server');
  const dir = mkdtempSync(join(tmpdir(), 'weir-test-redis-'));
  const port = await freePort();
  const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  await waitFor('127.0.0.1', port, 'redis-server', child);
  return { name: 'Redis', port, url: `redis://127.0.0.1:${port}`, child, dir };
}

function pgBin() {
  const versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
  return join('/usr/lib/postgresql', versions[0], 'bin');
}

async function startPostgres() {
  ensureApt('/usr/lib/postgresql/*/bin/initdb', 'postgresql');
  const bin = pgBin();
  const dir = mkdtempSync(join(tmpdir(), 'weir-test-pg-'));
  // initdb and postgres refuse to run as root: as root, run them as the package's postgres user.
  const asRoot = process.getuid?.() === 0;
  let wrap = (cmd, args) => [cmd, args];
  if (asRoot) {
    const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    chownSync(dir, Number(id.stdout), Number(gid.stdout));
    wrap = (cmd, args) => ['runuser', ['-u', 'postgres', '--', cmd, ...args]];
  }
  const data = join(dir, 'data');
  run(...wrap(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']));
  const port = await freePort();
  const child = spawn(...wrap(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off']), { stdio: 'ignore' });
  await waitFor('127.0.0.1', port, 'postgres', child);
  // Accepting TCP is not accepting queries yet: createdb retries until the server is up.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = spawnSync(join(bin, 'createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'test'], { encoding: 'utf8' });
    if (r.status === 0) break;
    if (Date.now() > deadline) throw new Error(`createdb test failed: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 200));
  }
  return { name: 'PostgreSQL', port, url: `postgres://postgres@127.0.0.1:${port}/test`, child, dir };
}

/**
 * Makes sure the services `needed` (env variable names) answer; returns the env for
 * the tests, what was started, and stop().
 */
async function ensureServices(needed, env = process.env) {
  const out = { ...env };
  const started = [];
  const starters = { WEIR_TEST_REDIS_URL: startRedis, WEIR_TEST_POSTGRES_URL: startPostgres };
  for (const name of needed) {
    const url = new URL(env[name] || DEFAULTS[name]);
    const port = Number(url.port || (url.protocol === 'redis:' ? 6379 : 5432));
    if (await answers(url.hostname, port)) continue;
    const s = await starters[name]();
    s.was = `${url.hostname}:${port}`;
    started.push(s);
    out[name] = s.url;
  }
  const stop = () => {
    for (const s of started) {
      try {
        s.child.kill('SIGTERM');
      } catch {
        // already gone
      }
    }
  };
  const cleanup = async () => {
    stop();
    await Promise.all(started.map((s) => new Promise((r) => (s.child.exitCode !== null ? r() : s.child.once('exit', r)))));
    for (const s of started) rmSync(s.dir, { recursive: true, force: true });
  };
  return { env: out, started, stop, cleanup };
}

module.exports = { ensureServices, answers, DEFAULTS };
