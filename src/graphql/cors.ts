import cors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import { ConfigError, int, str, type Env } from '../config.env';

/** Cross-origin requests from browsers (a frontend served from another origin than the API). */
export interface CorsConfig {
  /**
   * CORS_ORIGINS: the origins whose pages may call the API (comma-separated, e.g.
   * `https://app.example.com,http://localhost:5173`), or `*` for any. Unset: no CORS headers, so
   * only pages of the API's own origin (or behind the same reverse proxy) can call it.
   */
  origins?: string[] | '*';
  /** CORS_MAX_AGE_SECONDS: how long a browser may cache a preflight answer. @default 600 */
  maxAgeSeconds: number;
}

export function loadCorsConfig(env: Env): CorsConfig {
  const raw = str(env, 'CORS_ORIGINS');
  const maxAgeSeconds = int(env, 'CORS_MAX_AGE_SECONDS', 600, 0, 86_400);
  if (raw === undefined) return { maxAgeSeconds };
  if (raw === '*') return { origins: '*', maxAgeSeconds };
  const origins = raw.split(',').map((o) => o.trim()).filter(Boolean);
  for (const origin of origins) {
    let u: URL;
    try {
      u = new URL(origin);
    } catch {
      throw new ConfigError(`CORS_ORIGINS: "${origin}" is not an origin (scheme://host[:port])`);
    }
    // an origin is exactly what a browser sends in the Origin header: no path, no trailing slash
    if (!['http:', 'https:'].includes(u.protocol) || u.origin !== origin) {
      throw new ConfigError(`CORS_ORIGINS: "${origin}" is not an origin (scheme://host[:port], e.g. https://app.example.com)`);
    }
  }
  if (!origins.length) throw new ConfigError('CORS_ORIGINS is empty');
  return { origins, maxAgeSeconds };
}

/**
 * CORS for every route (`/graphql`, `/graphql/stream`, `/files/:id`, `/metrics` is never asked
 * for by a page) with `@fastify/cors`: preflights are answered in its onRequest hook, before
 * Apollo, with the methods the API uses and whatever request headers the page asks for
 * (`authorization`, `content-type`, `x-user-id` in development, Apollo's preflight headers,
 * graphql-sse's stream token). No credentials: identity travels in the `Authorization` header,
 * never in cookies. Without CORS_ORIGINS nothing is registered.
 */
export async function registerCors(app: FastifyInstance, config: CorsConfig): Promise<void> {
  if (!config.origins) return;
  await app.register(cors, {
    origin: config.origins === '*' ? '*' : config.origins,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS'],
    credentials: false,
    maxAge: config.maxAgeSeconds,
    // graphql-sse's single connection mode hands the token back in the body; files name themselves here
    exposedHeaders: ['content-disposition', 'retry-after'],
  });
}
