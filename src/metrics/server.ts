// The metrics port: /metrics for Prometheus, /healthz and /readyz for Kubernetes
// probes (deploy/k8s/statefulset.yaml), and for people / (a live page) and /status
// (its JSON). Plain node:http: five routes do not need a framework.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { STATUS_PAGE } from './page';
import { ConfigError, WeirError, messageOf } from '../errors/errors';

export interface MetricsServerOptions {
  /** Interface to listen on, e.g. "127.0.0.1" or "0.0.0.0". */
  host: string;
  /** TCP port; 0 picks a free one (see the returned `port`). */
  port: number;
  /** The registry /metrics renders. */
  registry: Registry;
  /** /readyz answers 200 while this returns true, else 503 (e.g. not yet consuming, or draining). */
  ready: () => boolean;
  /** What /status answers (StatusModel.snapshot); without it / and /status are 404. */
  status?: () => unknown;
}

export interface MetricsServer {
  /** The port actually listened on. */
  port: number;
  /** Stops listening and drops open (keep-alive) connections. */
  close(): Promise<void>;
}

/** Why the metrics server cannot listen, naming the config key: a port in use or a host not on this machine is the user's to fix. */
function listenError(e: Error, host: string, port: number): WeirError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return new ConfigError(`metrics.port ${port} is in use (EADDRINUSE on ${host}): another process listens there; pick another port, or 0 for a free one`, e);
  if (code === 'EACCES') return new ConfigError(`metrics.port ${port}: permission denied (ports below 1024 need privileges)`, e);
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new ConfigError(`metrics.host ${host}: not an address of this machine (${code})`, e);
  return new WeirError(`metrics: cannot listen on ${host}:${port}: ${e.message}`, { domain: 'external', cause: e });
}

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}

/**
 * Serves, until `close()`:
 * - `GET /metrics`: the registry in Prometheus text format (its own content type);
 * - `GET /healthz`: 200 `ok` while the process is alive (liveness: the event loop answers);
 * - `GET /readyz`: 200 `ready` when `ready()` is true, else 503 `not ready`;
 * - with `status`: `GET /status`, its JSON; `GET /`, the page that shows it live;
 * - 405 for other methods on these paths, 404 for any other path.
 * HEAD is answered like GET, without a body.
 */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const { registry, ready } = opts;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?', 1)[0];
    const routes = opts.status === undefined ? ['/metrics', '/healthz', '/readyz'] : ['/metrics', '/healthz', '/readyz', '/status', '/'];
    const route = path !== undefined && routes.includes(path) ? path : undefined;
    if (route === undefined) return send(res, 404, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n', { Allow: 'GET, HEAD' });
    switch (route) {
      case '/healthz':
        return send(res, 200, 'ok\n');
      case '/readyz':
        return ready() ? send(res, 200, 'ready\n') : send(res, 503, 'not ready\n');
      case '/metrics':
        return send(res, 200, await registry.metrics(), { 'Content-Type': registry.contentType });
      case '/status':
        return send(res, 200, JSON.stringify(opts.status?.()), { 'Content-Type': 'application/json; charset=utf-8' });
      case '/':
        return send(res, 200, STATUS_PAGE, { 'Content-Type': 'text/html; charset=utf-8' });
    }
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) send(res, 500, `${messageOf(e)}\n`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    const fail = (e: Error): void => reject(listenError(e, opts.host, opts.port));
    server.once('error', fail);
    server.listen(opts.port, opts.host, () => {
      server.off('error', fail);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e === undefined ? resolve() : reject(e)));
        // Prometheus keeps its scrape connection alive; without this close() waits for it to time out.
        server.closeAllConnections();
      }),
  };
}
