/**
 * CORS (CORS_ORIGINS): a page of another origin (an Apollo Client app on its own dev server) may
 * call the API only when its origin is listed; preflights are answered before Apollo; without
 * the setting the server sends no CORS headers at all.
 */
import { loadConfig } from '../src/config';
import { ConfigError } from '../src/config.env';
import { newUser, startTestServer, type TestServer } from './support/server';

const APP = 'http://localhost:5173';
const OTHER = 'https://evil.example.com';

async function preflight(s: TestServer, path: string, origin: string, method = 'POST', headers = 'content-type,authorization,x-user-id') {
  return fetch(`${s.url}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers },
  });
}

async function post(s: TestServer, origin: string, user: string) {
  return fetch(s.graphqlUrl, {
    method: 'POST',
    headers: { origin, 'content-type': 'application/json', 'x-user-id': user },
    body: JSON.stringify({ query: 'query Count { visions(first: 1) { totalCount } }' }),
  });
}

describe('CORS_ORIGINS set', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ CORS_ORIGINS: `${APP}, https://app.example.com`, CORS_MAX_AGE_SECONDS: '120' });
  });
  afterAll(() => s?.stop());

  it('answers the preflight of a listed origin before Apollo, with the headers the page asked for', async () => {
    for (const path of ['/graphql', '/graphql/stream']) {
      const r = await preflight(s, path, APP);
      expect(r.status).toBe(204);
      expect(r.headers.get('access-control-allow-origin')).toBe(APP);
      expect(r.headers.get('access-control-allow-methods')).toContain('POST');
      expect(r.headers.get('access-control-allow-headers')).toBe('content-type,authorization,x-user-id');
      expect(r.headers.get('access-control-max-age')).toBe('120');
      expect(r.headers.get('access-control-allow-credentials')).toBeNull();
    }
  });

  it('lets the listed origin read the answer, and only that origin', async () => {
    const user = newUser('cors');
    const ok = await post(s, APP, user);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe(APP);
    expect(ok.headers.get('vary')).toMatch(/origin/i);
    expect(await ok.json()).toEqual({ data: { visions: { totalCount: 0 } } });
    // another origin: the request runs (CORS is the browser's rule) but its page may not read it
    const other = await post(s, OTHER, user);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const pre = await preflight(s, '/graphql', OTHER);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('CORS_ORIGINS unset (the default)', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s?.stop());

  it('sends no CORS headers: only same-origin pages can read answers', async () => {
    const r = await post(s, APP, newUser('nocors'));
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
    const pre = await preflight(s, '/graphql', APP);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('CORS_ORIGINS validation', () => {
  it.each([['https://app.example.com/'], ['app.example.com'], ['https://app.example.com/path'], ['ftp://x.example.com'], [' , ']])(
    'refuses %p with a clear message',
    (value) => {
      expect(() => loadConfig({ CORS_ORIGINS: value })).toThrow(ConfigError);
      expect(() => loadConfig({ CORS_ORIGINS: value })).toThrow(/CORS_ORIGINS/);
    },
  );

  it('takes "*" and lists of origins', () => {
    expect(loadConfig({ CORS_ORIGINS: '*' }).cors.origins).toBe('*');
    expect(loadConfig({ CORS_ORIGINS: 'http://localhost:5173,https://a.example.com:8443' }).cors.origins).toEqual([
      'http://localhost:5173',
      'https://a.example.com:8443',
    ]);
  });
});
