import type { FastifyInstance } from 'fastify';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../logger';
import type { Metrics } from './metrics';
import type { MetricsConfig } from './metrics.config';

export interface MetricsEndpoint {
  /** Base URL of the METRICS_PORT listener, when there is one (e.g. http://127.0.0.1:9464). */
  url?: string;
  /** Closes that listener. */
  close(): Promise<void>;
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** True when `authorization` is `Bearer <token>`; compared in constant time. */
function bearerMatches(authorization: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  return !!m && timingSafeEqual(digest(m[1]!), digest(token));
}

async function answer(metrics: Metrics, token: string | undefined, authorization: string | undefined, logger: Logger): Promise<Answer> {
  if (token && !bearerMatches(authorization, token)) {
    return { status: 401, headers: { 'www-authenticate': 'Bearer realm="metrics"', 'content-type': 'text/plain; charset=utf-8' }, body: 'Unauthorized\n' };
  }
  try {
    return { status: 200, headers: { 'content-type': metrics.contentType, 'cache-control': 'no-store' }, body: await metrics.render() };
  } catch (err) {
    logger.error({ err }, 'metrics: rendering failed');
    return { status: 500, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: 'metrics unavailable\n' };
  }
}

/**
 * `GET /metrics` (Prometheus text format). With METRICS_PORT, on a listener of its own
 * (METRICS_HOST) and not on the public port; otherwise on the public port, behind
 * `Authorization: Bearer <METRICS_TOKEN>` when a token is set. In production the public port
 * serves it only with a token ({@link createMetrics} gives no metrics otherwise). A token, when
 * set, is asked on the separate listener too. Register before the public app listens.
 */
export async function serveMetrics(opts: { app: FastifyInstance; metrics: Metrics; config: MetricsConfig; logger: Logger }): Promise<MetricsEndpoint> {
  const { app, metrics, config, logger } = opts;
  if (config.port === undefined) {
    app.get('/metrics', async (request, reply) => {
      const a = await answer(metrics, config.token, request.headers.authorization, logger);
      return reply.code(a.status).headers(a.headers).send(a.body);
    });
    return { close: async () => undefined };
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found\n');
      return;
    }
    void answer(metrics, config.token, req.headers.authorization, logger).then((a) => {
      res.writeHead(a.status, a.headers).end(req.method === 'HEAD' ? undefined : a.body);
    });
  });
  // a scraper sends small requests; anything slow is not one
  server.headersTimeout = 5000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err }, 'metrics listener error'));
  const addr = server.address() as AddressInfo;
  const url = `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`;
  logger.info({ url: `${url}/metrics` }, `metrics listening (not on the public port)${config.token ? ', METRICS_TOKEN required' : ''}`);
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
