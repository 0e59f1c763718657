/**
 * The playground: GraphiQL built into dist/playground (`npm run build`) and served by the server
 * at GET /graphql to browsers, with its assets under /graphql/playground/. GraphQL over GET and
 * POST is unchanged; production turns the page off unless PLAYGROUND=true; PLAYGROUND_UI=apollo
 * leaves the page to Apollo's landing page. The page in a real browser: playground.browser.test.ts.
 */
import Fastify from 'fastify';
import { existsSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../src/config';
import { createPlayground, defaultPlaygroundDir, prefersHtml } from '../src/playground/playground.route';
import { newUser, startTestServer, type TestServer } from './support/server';

/** What Chromium sends when it navigates to a URL. */
const BROWSER_ACCEPT =
  'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7';

const SECRET = 'playground-secret-playground-secret-0123';
const CDN = /esm\.sh|unpkg\.com|jsdelivr|cdnjs|googleapis|gstatic|cdn\.apollographql|embeddable-sandbox|apollo-server-landing-page/i;

const getPage = (url: string, headers: Record<string, string> = { accept: BROWSER_ACCEPT }) => fetch(url, { headers });

/** src/href of the page's script and link tags. */
function referencedUrls(html: string): string[] {
  return [...html.matchAll(/<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]*)"/g)].map((m) => m[1]!);
}

/** A request whose path goes out exactly as written (fetch would resolve `..` first). */
function rawGet(base: string, path: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

it('the playground is built (npm run build runs build:playground)', () => {
  expect(existsSync(join(defaultPlaygroundDir(), 'index.html'))).toBe(true);
});

it('tells a browser navigation from API clients by its Accept header', () => {
  expect(prefersHtml(BROWSER_ACCEPT)).toBe(true);
  expect(prefersHtml('text/html')).toBe(true);
  expect(prefersHtml('')).toBe(false);
  expect(prefersHtml('*/*')).toBe(false);
  expect(prefersHtml('application/json')).toBe(false);
  expect(prefersHtml('application/graphql-response+json, application/json;q=0.9')).toBe(false);
  expect(prefersHtml('application/json, text/html;q=0.5')).toBe(false);
  expect(prefersHtml('text/html;q=0')).toBe(false);
});

describe('in development (the default)', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('GET /graphql from a browser is the GraphiQL page, with a same-origin Content-Security-Policy', async () => {
    const res = await getPage(s.graphqlUrl);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const csp = res.headers.get('content-security-policy') ?? '';
    const host = new URL(s.url).host;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self';");
    expect(csp).toContain(`connect-src 'self' ws://${host} wss://${host}`);
    expect(csp).toContain("worker-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-eval');
    expect(csp).not.toMatch(/https?:/);
    const html = await res.text();
    expect(html).toContain('<div id="root">');
    expect(html).toContain('<meta name="vision-path-identity" content="dev" />');
    expect(html).not.toMatch(/https?:\/\//);
  });

  it('every script and stylesheet of the page is a relative URL on this server, served with its content type', async () => {
    const html = await (await getPage(s.graphqlUrl)).text();
    const refs = referencedUrls(html);
    expect(refs.some((r) => r.endsWith('.js'))).toBe(true);
    expect(refs.some((r) => r.endsWith('.css'))).toBe(true);
    const entry = /<script type="module"[^>]*\bsrc="([^"]+)"/.exec(html)?.[1];
    expect(entry).toBeDefined();
    for (const ref of refs) {
      expect(ref).not.toMatch(/^([a-z]+:|\/\/)/i);
      const url = new URL(ref, s.graphqlUrl);
      expect(url.origin).toBe(new URL(s.url).origin);
      expect(url.pathname.startsWith('/graphql/playground/assets/')).toBe(true);
      const asset = await fetch(url);
      expect(asset.status).toBe(200);
      const type = ref.endsWith('.js') ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8';
      expect(asset.headers.get('content-type')).toBe(type);
      expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      const body = await asset.text();
      expect(body.length).toBeGreaterThan(0);
      // nothing is fetched from a CDN: no import of an absolute URL, no known CDN host
      expect(body).not.toMatch(/\bimport\s*\(?\s*["'`](https?:)?\/\//);
      expect(body).not.toMatch(/\bfrom\s*["'`](https?:)?\/\//);
      expect(body).not.toMatch(CDN);
      if (ref.endsWith('.css')) {
        // fonts and images of the stylesheet are data: URLs or files next to it, served too
        for (const m of body.matchAll(/url\(\s*["']?([^"')]+)["']?\s*\)/g)) {
          const target = m[1]!;
          if (target.startsWith('data:') || target.startsWith('#')) continue;
          expect(target).not.toMatch(/^([a-z]+:|\/\/)/i);
          const font = await fetch(new URL(target, url));
          expect(font.status).toBe(200);
          expect(font.headers.get('content-type')).toMatch(/^(font\/|image\/)/);
        }
      }
    }
  });

  it('Monaco workers are bundled files on this server (no blob: or CDN workers)', async () => {
    const html = await (await getPage(s.graphqlUrl)).text();
    const entry = /<script type="module"[^>]*\bsrc="([^"]+)"/.exec(html)![1]!;
    const entryUrl = new URL(entry, s.graphqlUrl);
    const js = await (await fetch(entryUrl)).text();
    const workers = [...js.matchAll(/new URL\(\s*["'`]([^"'`]*worker[^"'`]*\.js)["'`]\s*,\s*import\.meta\.url\s*\)/g)].map((m) => m[1]!);
    expect(workers.length).toBeGreaterThanOrEqual(3); // editor, json, graphql
    for (const w of workers) {
      const res = await fetch(new URL(w, entryUrl));
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    }
  });

  it('assets are gzipped for clients that accept it', async () => {
    const html = await (await getPage(s.graphqlUrl)).text();
    const entry = /<script type="module"[^>]*\bsrc="([^"]+)"/.exec(html)![1]!;
    const { hostname, port, pathname } = new URL(entry, s.graphqlUrl);
    const res = await new Promise<{ encoding?: string; vary?: string }>((resolve, reject) => {
      httpRequest({ host: hostname, port, path: pathname, headers: { 'accept-encoding': 'gzip, br' } }, (r) => {
        r.resume();
        r.on('end', () => resolve({ encoding: r.headers['content-encoding'], vary: String(r.headers.vary) }));
      })
        .on('error', reject)
        .end();
    });
    expect(res).toEqual({ encoding: 'gzip', vary: 'accept-encoding' });
  });

  it('no path reaches a file outside the built playground', async () => {
    for (const path of [
      '/graphql/playground/../../package.json',
      '/graphql/playground/assets/../../../package.json',
      '/graphql/playground/assets/..%2F..%2F..%2Fpackage.json',
      '/graphql/playground/%2e%2e/%2e%2e/%2e%2e/package.json',
      '/graphql/playground/..%5C..%5C..%5Cpackage.json',
      '/graphql/playground/assets/%2Fetc%2Fpasswd',
      '/graphql/playground//etc/passwd',
      '/graphql/playground/index.html',
      '/graphql/playground/.build-stamp',
      '/graphql/playground/assets/',
      '/graphql/playground/assets/nope.js',
    ]) {
      const r = await rawGet(s.url, path);
      expect({ path, status: r.status }).toEqual({ path, status: 404 });
      expect(r.body).not.toContain('"name": "vision-path"');
      expect(r.body).not.toContain('root:');
    }
  });

  it('GET /graphql?query=… is still GraphQL, also from a browser', async () => {
    const url = `${s.graphqlUrl}?query=${encodeURIComponent('{ __typename }')}`;
    for (const accept of [BROWSER_ACCEPT, 'application/json']) {
      const res = await fetch(url, { headers: { accept, 'apollo-require-preflight': 'true', 'x-user-id': newUser('pg') } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await res.json()).toEqual({ data: { __typename: 'Query' } });
    }
  });

  it('a GET without a query from an API client is Apollo\'s 400, not the page', async () => {
    const res = await fetch(s.graphqlUrl, { headers: { accept: 'application/json', 'apollo-require-preflight': 'true' } });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  });

  it('POST is unaffected, whatever the Accept header says', async () => {
    const user = newUser('pg');
    const r = await s.gql<{ createVision: { id: string; title: string } }, { title: string }>(
      'mutation ($title: String) { createVision(input: { title: $title }) { id title } }',
      { title: 'from the playground test' },
      { user },
    );
    expect(r.status).toBe(200);
    expect(r.data?.createVision.title).toBe('from the playground test');
    const res = await fetch(s.graphqlUrl, {
      method: 'POST',
      headers: { accept: BROWSER_ACCEPT, 'content-type': 'application/json', 'x-user-id': user },
      body: JSON.stringify({ query: '{ visions { totalCount } }' }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ data: { visions: { totalCount: 1 } } });
  });
});

describe('in production', () => {
  const production = { NODE_ENV: 'production', AUTH_JWT_SECRET: SECRET, OPENAI_API_KEY: 'k' };

  it('there is no playground: a browser GET is Apollo\'s answer (400, JSON), and no asset is served', async () => {
    const s = await startTestServer(production);
    try {
      const res = await getPage(s.graphqlUrl);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(res.headers.get('content-security-policy')).toBeNull();
      const body = await res.text();
      expect(body).not.toContain('<html');
      expect(body).not.toContain('<script');
      const asset = await rawGet(s.url, '/graphql/playground/assets/nope.js');
      expect(asset.status).toBe(404);
    } finally {
      await s.stop();
    }
  });

  it('PLAYGROUND=true serves it, with the Headers tab preset for a JWT', async () => {
    const s = await startTestServer({ ...production, PLAYGROUND: 'true' });
    try {
      const res = await getPage(s.graphqlUrl);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
      const html = await res.text();
      expect(html).toContain('<meta name="vision-path-identity" content="jwt" />');
      const js = referencedUrls(html).find((r) => r.endsWith('.js'))!;
      expect((await fetch(new URL(js, s.graphqlUrl))).status).toBe(200);
    } finally {
      await s.stop();
    }
  });
});

describe('settings', () => {
  it('PLAYGROUND_UI=apollo leaves GET /graphql to Apollo\'s landing page', async () => {
    const s = await startTestServer({ PLAYGROUND_UI: 'apollo' });
    try {
      const res = await getPage(s.graphqlUrl);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      // Apollo's page, not ours: it loads Apollo's embedded Sandbox
      const html = await res.text();
      expect(html).toMatch(/apollo/i);
      expect(html).not.toContain('vision-path-identity');
      expect((await rawGet(s.url, '/graphql/playground/assets/x.js')).status).toBe(404);
      // queries are unchanged
      const q = await s.gql('{ __typename }', undefined, { user: newUser('pg') });
      expect(q.data).toEqual({ __typename: 'Query' });
    } finally {
      await s.stop();
    }
  });

  it('PLAYGROUND=false turns the page off in development too', async () => {
    const s = await startTestServer({ PLAYGROUND: 'false' });
    try {
      const res = await getPage(s.graphqlUrl);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    } finally {
      await s.stop();
    }
  });

  it('without a built playground a browser gets a page saying how to build it, logged once, and the API still works', async () => {
    const lines: { msg: string }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const config = loadConfig({ NODE_ENV: 'development', FILE_URL_SECRET: 'x'.repeat(32) });
    const playground = createPlayground({ config, logger, dir: join(__dirname, 'no-such-playground-dir') });
    const app = Fastify();
    playground.registerRoutes(app);
    app.get('/graphql', (request, reply) => (playground.wants(request) ? playground.serve(request, reply) : reply.send({ data: null })));
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    try {
      for (let i = 0; i < 3; i++) {
        const res = await getPage(`http://127.0.0.1:${port}/graphql`);
        expect(res.status).toBe(503);
        expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
        const body = await res.text();
        expect(body).toContain('npm run build');
        expect(body).not.toContain('<script');
      }
      const api = await fetch(`http://127.0.0.1:${port}/graphql`, { headers: { accept: 'application/json' } });
      expect(await api.json()).toEqual({ data: null });
      expect(lines.filter((l) => /playground .*not built/.test(l.msg))).toHaveLength(1);
    } finally {
      await app.close();
    }
  });
});
