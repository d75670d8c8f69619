// source.ssl with files: the CA, client certificate and key reach kafkajs in the form
// it hands to tls.connect (a real TLS handshake against a local TLS server that
// demands a client certificate from that CA), and a missing file is one line naming
// the config key and the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { validateConfig } from '../src/config';
import { sslOptions } from '../src/sources/kafka';
import { ConfigError } from '../src/errors/errors';

const root = join(__dirname, '..', '..');
const bin = join(root, 'bin', 'weir.js');

/** A CA, a server certificate for 127.0.0.1 and a client certificate (CN weir-client), all signed by the CA. */
function certificates(dir: string): Record<'ca' | 'caKey' | 'serverCert' | 'serverKey' | 'clientCert' | 'clientKey', string> {
  const f = (n: string) => join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=weir-test-ca');
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  for (const [name, cn, ext] of [['server', '127.0.0.1', ['-extfile', f('server.ext')]], ['client', 'weir-client', []]] as const) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${cn}`);
    ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.crt`), '-days', '2', ...ext);
  }
  return { ca: f('ca.crt'), caKey: f('ca.key'), serverCert: f('server.crt'), serverKey: f('server.key'), clientCert: f('client.crt'), clientKey: f('client.key') };
}

test('source.ssl {ca, cert, key}: kafkajs verifies the server by the CA and presents the client certificate', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-tls-'));
  const c = certificates(dir);
  const cfg = validateConfig({
    source: { type: 'kafka', brokers: ['127.0.0.1:1'], topic: 't', ssl: { ca: c.ca, cert: c.clientCert, key: c.clientKey } },
    aggregations: [{ name: 'a', value: 'v', window: { type: 'tumbling', sizeMs: 1000 } }],
  });
  assert.equal(cfg.source.type, 'kafka');
  const ssl = sslOptions(cfg.source.type === 'kafka' ? cfg.source.ssl : false);
  const peers: Array<{ authorized: boolean; cn: unknown }> = [];
  const server = createServer({ cert: readFileSync(c.serverCert), key: readFileSync(c.serverKey), ca: readFileSync(c.ca), requestCert: true, rejectUnauthorized: true }, (s: TLSSocket) => {
    peers.push({ authorized: s.authorized, cn: s.getPeerCertificate().subject?.CN });
    s.destroy(); // no Kafka here: the handshake is what is tested
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    const admin = new Kafka({ clientId: 't', brokers: [`127.0.0.1:${port}`], ssl, logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 3000 }).admin();
    await assert.rejects(admin.connect());
    assert.ok(peers.length > 0, 'the TLS handshake completed (server verified by the CA, client certificate accepted)');
    assert.deepEqual(peers[0], { authorized: true, cn: 'weir-client' });
  } finally {
    server.close();
  }
});

test('source.ssl: a missing file, a file that is not PEM, a cert without its key: one line naming the key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-tls-'));
  assert.throws(() => sslOptions({ ca: join(dir, 'nope.crt') }), (e: unknown) => e instanceof ConfigError && e.message === `source.ssl.ca: file not found: ${join(dir, 'nope.crt')}`);
  writeFileSync(join(dir, 'x.key'), 'not a key');
  assert.throws(() => sslOptions({ key: join(dir, 'x.key'), cert: join(dir, 'x.key') }), /source\.ssl\.cert: .*x\.key is not a PEM file/);
  assert.throws(
    () => validateConfig({ source: { type: 'kafka', brokers: ['b:1'], topic: 't', ssl: { cert: 'c.pem' } }, aggregations: [{ name: 'a', value: 'v', window: { type: 'tumbling', sizeMs: 1 } }] }),
    /source\.ssl: cert and key go together/,
  );
  // weir run: the same line, exit 2, before anything connects.
  const cfg = join(dir, 'weir.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      source: { type: 'kafka', brokers: ['127.0.0.1:1'], topic: 't', ssl: { ca: join(dir, 'missing-ca.pem') } },
      aggregations: [{ name: 'a', value: 'v', window: { type: 'tumbling', sizeMs: 1000 } }],
      sinks: [{ type: 'file', path: join(dir, 'r.jsonl') }],
      deadLetter: { type: 'file', path: join(dir, 'd.jsonl') },
      state: { backend: 'memory' },
      checkpoint: { dir: join(dir, 'cp') },
    }),
  );
  const r = spawnSync(process.execPath, [bin, 'run', '--config', cfg], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.stderr, `weir: source.ssl.ca: file not found: ${join(dir, 'missing-ca.pem')}\n`);
  assert.equal(r.status, 2);
});
