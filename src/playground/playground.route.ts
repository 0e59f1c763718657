import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, extname, join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Config } from '../config';
import type { Logger } from '../logger';

/** Where the page's assets are served; the built index.html refers to them as `graphql/playground/…`. */
export const PLAYGROUND_ASSETS_PREFIX = '/graphql/playground/';

const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.ttf': 'font/ttf',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
};

/** Compressing below this size saves nothing worth a header. */
const GZIP_MIN_BYTES = 1024;

/** The project's root: the nearest folder above this file with a package.json (src/ or dist/src/ alike). */
function projectRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

/** dist/playground, where `npm run build:playground` (Vite, playground/vite.config.mjs) writes the page. */
export function defaultPlaygroundDir(): string {
  return join(projectRoot(), 'dist', 'playground');
}

/**
 * The playground page's Content-Security-Policy: everything from this origin only. Monaco's
 * workers are same-origin files (worker-src 'self'); Monaco and React put styles into the page
 * at run time ('unsafe-inline' for styles only, never for scripts; no 'unsafe-eval'); the bundled
 * fonts are data: URLs. connect-src: HTTP to this origin, graphql-ws to the same host.
 */
export function playgroundCsp(host: string | undefined): string {
  const sameHostWs = host && /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host) ? ` ws://${host} wss://${host}` : '';
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    `connect-src 'self'${sameHostWs}`,
    "worker-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

function notBuiltPage(dir: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Vision Path · playground not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>The playground is not built</h1>
<p>This server would show GraphiQL here, but <code>${escapeHtml(dir)}</code> does not exist.
Build it with the development dependencies installed:</p>
<pre>npm install
npm run build        # or only the page: npm run build:playground</pre>
<p>and restart the server. The GraphQL API itself works: POST a request to this URL, or open a
WebSocket (graphql-ws) on it. <code>PLAYGROUND=false</code> turns this page off;
<code>PLAYGROUND_UI=apollo</code> shows Apollo's landing page instead.</p>
</body></html>
`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

interface Asset {
  path: string;
  type: string;
  body?: Buffer;
  gzip?: Buffer | null;
}

export interface Playground {
  /** Whether `GET /graphql` of this request is for the playground (a browser, no `query` parameter). */
  wants(request: FastifyRequest): boolean;
  /** Answers such a request with the page (or, when dist/playground is missing, how to build it). */
  serve(request: FastifyRequest, reply: FastifyReply): FastifyReply;
  /** The page's assets under /graphql/playground/ (nothing when the playground is off). */
  registerRoutes(app: FastifyInstance): void;
}

/**
 * GraphiQL at `GET /graphql` for browsers (config.playground: PLAYGROUND, PLAYGROUND_UI). The
 * built files are listed once at start; only those paths are served, so no request can reach
 * another file. Bodies are read (and gzipped) on first use and kept.
 */
export function createPlayground(opts: { config: Config; logger: Logger; dir?: string }): Playground {
  const { config, logger } = opts;
  const on = config.playground.enabled && config.playground.ui === 'graphiql';
  const dir = resolve(opts.dir ?? defaultPlaygroundDir());
  const assets = new Map<string, Asset>();
  let index: string | undefined;

  if (on) {
    const indexPath = join(dir, 'index.html');
    if (existsSync(indexPath)) {
      // the page tells GraphiQL which identity this server accepts, to preset the Headers tab
      const mode = config.auth.devHeaderAllowed ? 'dev' : 'jwt';
      index = readFileSync(indexPath, 'utf8').replace(
        /<meta name="vision-path-identity" content="[a-z]*"\s*\/?>/,
        `<meta name="vision-path-identity" content="${mode}" />`,
      );
      const walk = (sub: string) => {
        for (const entry of readdirSync(join(dir, sub), { withFileTypes: true })) {
          const rel = sub ? `${sub}/${entry.name}` : entry.name;
          if (entry.isDirectory()) walk(rel);
          else if (entry.isFile() && rel !== 'index.html' && !entry.name.startsWith('.')) {
            assets.set(rel, { path: join(dir, rel), type: CONTENT_TYPES[extname(entry.name).toLowerCase()] ?? 'application/octet-stream' });
          }
        }
      };
      walk('');
      logger.info({ files: assets.size + 1 }, 'playground: GraphiQL for browsers at GET /graphql (PLAYGROUND=false turns it off)');
    } else {
      logger.warn(
        { dir },
        'the playground (GraphiQL at GET /graphql) is not built: browsers get a page saying how to build it. Run "npm run build" (needs the dev dependencies) or set PLAYGROUND=false',
      );
    }
  }

  const securityHeaders = (reply: FastifyReply) =>
    reply.header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer').header('x-frame-options', 'DENY');

  return {
    wants(request) {
      if (!on || request.method !== 'GET') return false;
      const q = request.query as Record<string, unknown> | undefined;
      if (q && q.query !== undefined) return false;
      return prefersHtml(String(request.headers.accept ?? ''));
    },

    serve(request, reply) {
      securityHeaders(reply).header('cache-control', 'no-cache').header('vary', 'accept');
      if (index === undefined) {
        return reply
          .code(503)
          .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
          .type('text/html; charset=utf-8')
          .send(notBuiltPage(dir));
      }
      return reply
        .code(200)
        .header('content-security-policy', playgroundCsp(request.headers.host))
        .type('text/html; charset=utf-8')
        .send(index);
    },

    registerRoutes(app) {
      if (!on) return;
      app.get(`${PLAYGROUND_ASSETS_PREFIX}*`, async (request, reply) => {
        const rel = (request.params as { '*'?: string })['*'] ?? '';
        const asset = assets.get(rel);
        if (!asset) return reply.code(404).type('text/plain; charset=utf-8').send('Not Found');
        if (!asset.body) {
          try {
            asset.body = readFileSync(asset.path);
          } catch (err) {
            logger.warn({ err, path: asset.path }, 'a playground file listed at start cannot be read');
            return reply.code(404).type('text/plain; charset=utf-8').send('Not Found');
          }
          const compressible = /^(text\/|application\/(json|wasm)|image\/svg|font\/ttf)/.test(asset.type);
          asset.gzip = compressible && asset.body.length >= GZIP_MIN_BYTES ? gzipSync(asset.body) : null;
        }
        securityHeaders(reply)
          // Vite puts a content hash in every asset's name: a new build has new names
          .header('cache-control', 'public, max-age=31536000, immutable')
          .header('vary', 'accept-encoding')
          .type(asset.type);
        if (asset.gzip && /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''))) {
          return reply.header('content-encoding', 'gzip').send(asset.gzip);
        }
        return reply.send(asset.body);
      });
    },
  };
}

/**
 * True when an Accept header ranks text/html above JSON, as a browser's navigation does
 * (`text/html,application/xhtml+xml,…,*\/*;q=0.8`); fetch() and GraphQL clients do not.
 */
export function prefersHtml(accept: string): boolean {
  let html = -1;
  let json = -1;
  for (const part of accept.split(',')) {
    const [type = '', ...params] = part.trim().toLowerCase().split(';');
    const qParam = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const q = qParam ? Number(qParam.slice(2)) : 1;
    const weight = Number.isFinite(q) ? q : 0;
    if (type.trim() === 'text/html') html = Math.max(html, weight);
    if (type.trim() === 'application/json' || type.trim() === 'application/graphql-response+json') json = Math.max(json, weight);
  }
  return html > 0 && html > json;
}
