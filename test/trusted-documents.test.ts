import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import type { Client } from 'graphql-ws';
import { ConfigError, loadConfig } from '../src/config';
import { RedisApqCache } from '../src/graphql/apq-cache';
import { redisAvailable, TEST_REDIS_URL } from './support/redis';
import { newUser, startTestServer, type TestServer } from './support/server';
import { wsClient } from './support/ws';

/**
 * Which documents run (src/graphql/trusted-documents.ts): automatic persisted queries as Apollo
 * Client's link drives them (shared through Redis), and the PERSISTED_DOCUMENTS safelist in both
 * manifest formats over HTTP and WebSocket.
 */

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const requireRedis = process.env.CI === 'true' || process.env.VP_TEST_REQUIRE_REDIS === 'true';
const FIXTURES = resolve(__dirname, 'fixtures');
const CODEGEN_MANIFEST = join(FIXTURES, 'persisted-documents.json');
const APOLLO_MANIFEST = join(FIXTURES, 'persisted-query-manifest.json');

type Errors = { message: string; extensions?: Record<string, any> }[];
interface Answer {
  status: number;
  data?: any;
  errors?: Errors;
}

interface Request {
  query?: string;
  variables?: Record<string, unknown>;
  operationName?: string;
  extensions?: Record<string, unknown>;
  documentId?: string;
}

const pq = (hash: string) => ({ persistedQuery: { version: 1, sha256Hash: hash } });

/** A POST (or a GET, as Apollo Client's `useGETForHashedQueries` sends it) to /graphql. */
async function send(s: TestServer, req: Request, opts: { user?: string; method?: 'GET' | 'POST' } = {}): Promise<Answer> {
  const headers: Record<string, string> = { 'x-user-id': opts.user ?? newUser('td') };
  let url = s.graphqlUrl;
  let body: string | undefined;
  if (opts.method === 'GET') {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(req)) if (v !== undefined) params.set(k, typeof v === 'string' ? v : JSON.stringify(v));
    url += `?${params}`;
    headers['apollo-require-preflight'] = 'true';
  } else {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(req);
  }
  const res = await fetch(url, { method: opts.method ?? 'POST', headers, body });
  const text = await res.text();
  try {
    return { status: res.status, ...JSON.parse(text) };
  } catch {
    throw new Error(`non-JSON answer ${res.status}: ${text.slice(0, 200)}`);
  }
}

function expectRefused(r: Answer, reason = 'PERSISTED_QUERY_NOT_IN_LIST') {
  expect(r.data).toBeUndefined();
  expect(r.status).toBe(400);
  expect(r.errors).toHaveLength(1);
  expect(r.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason });
}

/** One operation over graphql-ws: its last result, or the errors of its `error` message. */
function runWs(c: Client, payload: { query: string; variables?: Record<string, unknown>; extensions?: Record<string, unknown> }): Promise<{ data?: any; errors?: Errors }> {
  return new Promise((res, reject) => {
    let last: { data?: any; errors?: Errors } = {};
    c.subscribe(payload, {
      next: (r) => (last = r as typeof last),
      error: (e) => (Array.isArray(e) ? res({ errors: e as Errors }) : reject(new Error(`socket closed: ${(e as { code?: number }).code}`))),
      complete: () => res(last),
    });
  });
}

const visionsOf = async (s: TestServer, user: string) => (await s.sql<{ n: number }>('select count(*)::int as n from visions where userid = ?', [user]))[0]!.n;

/** A query text no earlier request has registered. */
let seq = 0;
const freshQuery = () => `query Apq${process.pid}x${Date.now().toString(36)}x${++seq} { visions(first: 1) { totalCount } }`;

describe('automatic persisted queries', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s?.stop());

  it.each(['POST', 'GET'] as const)('round trip as Apollo Client drives it (%s): hash → NOT_FOUND → hash + text → hash alone', async (method) => {
    const query = freshQuery();
    const hash = sha256(query);
    const miss = await send(s, { extensions: pq(hash) }, { method });
    // the code Apollo Client's link reacts to (it then sends the text); HTTP 200 as Apollo answers it
    expect(miss.errors?.[0]).toMatchObject({ message: 'PersistedQueryNotFound', extensions: { code: 'PERSISTED_QUERY_NOT_FOUND' } });
    expect(miss.data).toBeUndefined();
    const register = await send(s, { query, extensions: pq(hash) }, { method });
    expect(register).toMatchObject({ status: 200, data: { visions: { totalCount: 0 } } });
    expect(register.errors).toBeUndefined();
    const hit = await send(s, { extensions: pq(hash) }, { method });
    expect(hit).toMatchObject({ status: 200, data: { visions: { totalCount: 0 } } });
    expect(hit.errors).toBeUndefined();
  });

  it('a text with a hash that is not its own is refused (400) and does not run', async () => {
    const user = newUser('td-mismatch');
    const query = 'mutation { createVision { id } }';
    const r = await send(s, { query, extensions: pq(sha256('{ visions { totalCount } }')) }, { user });
    expectRefused(r, 'PERSISTED_QUERY_HASH_MISMATCH');
    expect(await visionsOf(s, user)).toBe(0);
    // nor was anything registered under that hash
    const again = await send(s, { extensions: pq(sha256('{ visions { totalCount } }')) });
    expect(again.errors?.[0]?.extensions?.code).toBe('PERSISTED_QUERY_NOT_FOUND');
  });

  it('an unknown persisted query version is a client error', async () => {
    const query = freshQuery();
    const r = await send(s, { query, extensions: { persistedQuery: { version: 2, sha256Hash: sha256(query) } } });
    expectRefused(r, 'PERSISTED_QUERY_VERSION_NOT_SUPPORTED');
  });

  it('over WebSocket a hash with its text runs; a hash alone is refused with a clear error', async () => {
    const c = wsClient(s.url, { user: newUser('td-ws') });
    try {
      const query = freshQuery();
      expect(await runWs(c, { query, extensions: pq(sha256(query)) })).toEqual({ data: { visions: { totalCount: 0 } } });
      const alone = await runWs(c, { query: '', extensions: pq(sha256(query)) });
      expect(alone.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'PERSISTED_QUERY_NOT_SUPPORTED' });
      const wrong = await runWs(c, { query, extensions: pq(sha256('x')) });
      expect(wrong.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'PERSISTED_QUERY_HASH_MISMATCH' });
    } finally {
      await c.dispose();
    }
  });

  it('APQ=false answers PERSISTED_QUERY_NOT_SUPPORTED (Apollo Client then sends full texts)', async () => {
    const off = await startTestServer({ APQ: 'false' });
    try {
      const query = freshQuery();
      const r = await send(off, { extensions: pq(sha256(query)) });
      expect(r.errors?.[0]?.extensions?.code).toBe('PERSISTED_QUERY_NOT_SUPPORTED');
      expect((await send(off, { query })).data).toEqual({ visions: { totalCount: 0 } });
    } finally {
      await off.stop();
    }
  });
});

describe('automatic persisted queries through Redis', () => {
  let hasRedis = false;
  let a: TestServer | undefined;
  let b: TestServer | undefined;
  let redis: Redis | undefined;
  beforeAll(async () => {
    hasRedis = await redisAvailable();
    if (!hasRedis) {
      if (requireRedis) throw new Error(`Redis does not answer at ${TEST_REDIS_URL}; CI must provide it`);
      console.warn(`*** Redis does not answer at ${TEST_REDIS_URL}: the shared APQ cache tests did NOT run ***`);
      return;
    }
    const env = { REDIS_URL: TEST_REDIS_URL, APQ_TTL_SECONDS: '120' };
    [a, b] = await Promise.all([startTestServer(env), startTestServer(env)]);
    redis = new Redis(TEST_REDIS_URL);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    redis?.disconnect();
  });

  it('a document registered through one instance is found by its hash on another', async () => {
    if (!hasRedis) return;
    const query = freshQuery();
    const hash = sha256(query);
    expect((await send(b!, { extensions: pq(hash) })).errors?.[0]?.extensions?.code).toBe('PERSISTED_QUERY_NOT_FOUND');
    expect((await send(a!, { query, extensions: pq(hash) })).data).toEqual({ visions: { totalCount: 0 } });
    // Apollo writes the cache after answering; the write is one command away
    let hit: Answer | undefined;
    for (let i = 0; i < 50; i++) {
      hit = await send(b!, { extensions: pq(hash) });
      if (!hit.errors) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(hit).toMatchObject({ status: 200, data: { visions: { totalCount: 0 } } });
    expect(hit!.errors).toBeUndefined();
    const ttl = await redis!.ttl(`vision-path:apq:${hash}`);
    expect(ttl).toBeGreaterThan(100);
    expect(ttl).toBeLessThanOrEqual(120);
  });

  it('a Redis that cannot be reached is a cache miss, never a failed operation', async () => {
    // a client to a port nobody listens on, set up as the server's command connection is
    const dead = new Redis('redis://127.0.0.1:9', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 200, retryStrategy: () => null });
    dead.on('error', () => undefined);
    const cache = new RedisApqCache(dead, pino({ level: 'silent' }));
    await expect(cache.get('apq:x')).resolves.toBeUndefined();
    await expect(cache.set('apq:x', '{ a }', { ttl: 60 })).resolves.toBeUndefined();
    await expect(cache.delete('apq:x')).resolves.toBe(false);
    dead.disconnect();
  });
});

interface ManifestDoc {
  id: string;
  body: string;
}

/** The fixture's documents by operation name. */
function manifestDocs(file: string): Record<'VisionCount' | 'CreateVision' | 'MessageAdded', ManifestDoc> {
  const json = JSON.parse(readFileSync(file, 'utf8'));
  const list: ManifestDoc[] = json.operations ?? Object.entries(json).map(([id, body]) => ({ id, body }));
  const byName = (name: string) => list.find((d) => new RegExp(`^\\w+ ${name}\\b`).test(d.body))!;
  return { VisionCount: byName('VisionCount'), CreateVision: byName('CreateVision'), MessageAdded: byName('MessageAdded') };
}

describe.each([
  ['GraphQL Codegen persisted-documents.json', CODEGEN_MANIFEST],
  ['Apollo persisted query manifest', APOLLO_MANIFEST],
])('safelist from a %s', (_label, file) => {
  let s: TestServer;
  const docs = manifestDocs(file);
  beforeAll(async () => {
    s = await startTestServer({ PERSISTED_DOCUMENTS: file });
  });
  afterAll(() => s?.stop());

  it('runs a listed document named by its hash (POST and GET) or by documentId', async () => {
    const user = newUser('td-list');
    for (const method of ['POST', 'GET'] as const) {
      const r = await send(s, { extensions: pq(docs.VisionCount.id) }, { user, method });
      expect(r).toEqual({ status: 200, data: { visions: { totalCount: 0 } } });
    }
    const created = await send(s, { documentId: docs.CreateVision.id, variables: { title: 'listed' } }, { user });
    expect(created.data?.createVision).toMatchObject({ title: 'listed' });
    expect(await visionsOf(s, user)).toBe(1);
    // GraphQL over HTTP's persisted documents appendix: "sha256:<hex>"
    const prefixed = await send(s, { documentId: `sha256:${sha256(docs.VisionCount.body)}` }, { user, method: 'GET' });
    expect(prefixed).toEqual({ status: 200, data: { visions: { totalCount: 1 } } });
  });

  it('runs a listed document sent as its exact text', async () => {
    const user = newUser('td-text');
    const r = await send(s, { query: docs.CreateVision.body, variables: { title: 'by text' } }, { user });
    expect(r.errors).toBeUndefined();
    expect(r.data?.createVision).toMatchObject({ title: 'by text' });
    // also with the hash Apollo Client's APQ link adds: nothing is registered, the text is listed
    const withHash = await send(s, { query: docs.VisionCount.body, extensions: pq(sha256(docs.VisionCount.body)) }, { user });
    expect(withHash).toEqual({ status: 200, data: { visions: { totalCount: 1 } } });
  });

  it('refuses any other document before it runs: BAD_USER_INPUT, PERSISTED_QUERY_NOT_IN_LIST, HTTP 400', async () => {
    const user = newUser('td-refused');
    // the same operation in another spelling is another document
    const other = docs.CreateVision.body.replace(/\s+/g, ' ');
    expectRefused(await send(s, { query: other, variables: { title: 'x' } }, { user }));
    expectRefused(await send(s, { query: 'mutation { createVision { id } }' }, { user }));
    // APQ registration is off: a hash with its (unlisted) text registers nothing
    const query = 'mutation Sneak { createVision { id } }';
    expectRefused(await send(s, { query, extensions: pq(sha256(query)) }, { user }));
    expectRefused(await send(s, { extensions: pq(sha256(query)) }, { user }));
    expectRefused(await send(s, { query, extensions: pq(sha256(query)) }, { user, method: 'GET' }));
    expect(await visionsOf(s, user)).toBe(0);
    // not parsed, so a broken text gets the same answer (and no schema detail)
    expectRefused(await send(s, { query: '{ nope(' }, { user }));
    expectRefused(await send(s, { query: '{ visionz { totalCount } }' }, { user }));
  });

  it('refuses an unknown hash as not in the list (not PERSISTED_QUERY_NOT_FOUND, which would make the client send the text)', async () => {
    expectRefused(await send(s, { extensions: pq(sha256('query Unknown { visions { totalCount } }')) }));
    expectRefused(await send(s, { documentId: 'no-such-id' }));
    expectRefused(await send(s, { variables: {} }));
  });

  it('refuses introspection that is not in the list', async () => {
    expectRefused(await send(s, { query: '{ __schema { queryType { name } } }' }));
    expectRefused(await send(s, { query: 'query IntrospectionQuery { __type(name: "Vision") { name } }' }));
  });

  it('applies over WebSocket: listed documents run (text or hash), others get the same refusal and do not run', async () => {
    const user = newUser('td-ws-list');
    const c = wsClient(s.url, { user });
    try {
      const created = await runWs(c, { query: docs.CreateVision.body, variables: { title: 'ws' } });
      expect(created.data?.createVision).toMatchObject({ title: 'ws' });
      // graphql-ws requires a `query` string: "" with a hash names the document
      expect(await runWs(c, { query: '', extensions: pq(docs.VisionCount.id) })).toEqual({ data: { visions: { totalCount: 1 } } });
      const refused = await runWs(c, { query: 'mutation { createVision { id } }' });
      expect(refused.errors).toHaveLength(1);
      expect(refused.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'PERSISTED_QUERY_NOT_IN_LIST' });
      const unknown = await runWs(c, { query: '', extensions: pq(sha256('nothing')) });
      expect(unknown.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'PERSISTED_QUERY_NOT_IN_LIST' });
      const sub = await runWs(c, { query: 'subscription { messageAdded(visionId: "00000000-0000-0000-0000-000000000000") { id } }' });
      expect(sub.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'PERSISTED_QUERY_NOT_IN_LIST' });
      // the socket is still usable
      expect(await runWs(c, { query: docs.VisionCount.body })).toEqual({ data: { visions: { totalCount: 1 } } });
      expect(await visionsOf(s, user)).toBe(1);
    } finally {
      await c.dispose();
    }
  });
});

describe('PERSISTED_DOCUMENTS is checked at start', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vp-manifest-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const load = (path: string) => () => loadConfig({ PERSISTED_DOCUMENTS: path });
  const apollo = (operations: unknown, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ format: 'apollo-persisted-query-manifest', version: 1, operations, ...extra });

  it.each([
    ['a missing file', () => join(dir, 'missing.json'), /PERSISTED_DOCUMENTS: cannot read ".*missing\.json" \(no such file\)/],
    ['a file that is not JSON', () => write('bad.json', '{ "abc": '), /is not valid JSON/],
    ['a JSON array', () => write('array.json', '["{ a }"]'), /is neither format/],
    ['a codegen map with a non-string value', () => write('num.json', '{ "abc": 1 }'), /the value of "abc" is not a document text/],
    ['an empty list', () => write('empty.json', '{}'), /lists no documents/],
    ['a document that does not parse', () => write('syntax.json', '{ "abc": "query {" }'), /does not parse \(id "abc"\): Syntax Error/],
    ['another Apollo manifest version', () => write('v2.json', apollo([], { version: 2 })), /"version": 2; only version 1/],
    ['an Apollo operation without a body', () => write('nobody.json', apollo([{ id: 'x', name: 'X', type: 'query' }])), /operations\[0\] has no string "body"/],
    ['an unknown format', () => write('format.json', JSON.stringify({ format: 'relay', operations: [] })), /"format": "relay", expected "apollo-persisted-query-manifest"/],
    ['two bodies under one id', () => write('dup.json', apollo([{ id: 'x', body: '{ a }' }, { id: 'x', body: '{ b }' }])), /two different documents with the id "x"/],
  ])('%s stops the start with a clear message', (_what, path, message) => {
    const fn = load(path());
    expect(fn).toThrow(ConfigError);
    expect(fn).toThrow(message);
  });

  it('the server does not start with a bad manifest', async () => {
    await expect(startTestServer({ PERSISTED_DOCUMENTS: join(dir, 'nothing-here.json') })).rejects.toThrow(/PERSISTED_DOCUMENTS: cannot read/);
  });

  it('an Apollo manifest whose operations are keyed by id loads too', () => {
    const path = write('keyed.json', apollo({ abc: { name: 'A', type: 'query', body: '{ visions { totalCount } }' } }));
    const manifest = loadConfig({ PERSISTED_DOCUMENTS: path }).documents.persistedManifest!;
    expect([...manifest.byId]).toEqual([['abc', '{ visions { totalCount } }']]);
  });

  it('both fixture formats load with their three documents', () => {
    for (const file of [CODEGEN_MANIFEST, APOLLO_MANIFEST]) {
      const manifest = loadConfig({ PERSISTED_DOCUMENTS: file }).documents.persistedManifest!;
      expect(manifest.byId.size).toBe(3);
      for (const [id, body] of manifest.byId) expect(id).toBe(sha256(body));
    }
  });
});
