import { randomUUID } from 'node:crypto';
import { buildSchema, print, specifiedRules, type DocumentNode } from 'graphql';
import type { Client } from 'graphql-ws';
import { SignJWT } from 'jose';
import { Topic } from '../src/graphql/pubsub';
import { DocumentCache } from '../src/graphql/subscriptions';
import { CreateVisionDocument, GetVisionDocument, MessageAddedDocument, SendMessageDocument } from './generated/graphql';
import { createScratchDatabase } from './support/db';
import { newUser, startTestServer, type TestServer } from './support/server';
import { collect, wsClient, type Collected } from './support/ws';

/**
 * Documents and errors over WebSocket (src/graphql/ws-operations.ts, DocumentCache): queries and
 * mutations work, every error is formatted as over HTTP, a bad document costs its operation and
 * not the socket, and only valid documents are kept, within a byte budget.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Errors = { message: string; locations?: unknown; path?: unknown; extensions?: Record<string, unknown> }[];
interface Outcome {
  data?: any;
  errors?: Errors;
}

/** One operation over graphql-ws: its last result, or the errors of its `error` message. A closed socket rejects. */
function run(c: Client, query: string, variables?: Record<string, unknown>): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    let last: Outcome = {};
    c.subscribe(
      { query, variables },
      {
        next: (r) => (last = r as Outcome),
        error: (e) => (Array.isArray(e) ? resolve({ errors: e as Errors }) : reject(new Error(`socket closed: ${(e as { code?: number }).code}`))),
        complete: () => resolve(last),
      },
    );
  });
}

/** A non-lazy client that records every (re)connection and close of its socket. */
function connect(url: string, auth: { user?: string; token?: string }) {
  const c = wsClient(url, auth, { lazy: false });
  const log = { connected: 0, closed: [] as number[] };
  c.on('connected', () => log.connected++);
  c.on('closed', (e) => log.closed.push((e as { code: number }).code));
  return { c, log };
}

/** Publishes messageAdded events until every given subscription has received one more. */
async function deliver(s: TestServer, visionId: string, subs: Collected<unknown>[]): Promise<void> {
  const want = subs.map((x) => x.events.length + 1);
  for (let i = 0; i < 400; i++) {
    s.server.pubsub.publish(Topic.MESSAGE_ADDED, visionId, {
      id: randomUUID(),
      visionId,
      sender: 'system',
      type: 'info',
      content: 'ping',
      state: 'complete',
      payload: null,
      createdAt: new Date().toISOString(),
    });
    await sleep(10);
    if (subs.every((x, k) => x.events.length >= want[k]!)) return;
  }
  throw new Error(`not delivered: ${JSON.stringify(subs.map((x) => x.errors))}`);
}

/** Errors as a client compares them: without stack traces. */
const withoutStack = (errors: Errors | undefined) =>
  errors?.map((e) => {
    const { stacktrace: _s, ...extensions } = e.extensions ?? {};
    return { ...e, extensions };
  });
/** Execution errors over WebSocket carry no locations (documents are kept without them). */
const withoutLocations = (errors: Errors | undefined) => withoutStack(errors)?.map(({ locations: _l, ...e }) => e);

const bigQuery = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `f${i}: visions { totalCount }`).join(' ')} }`;

describe('DocumentCache', () => {
  const schema = buildSchema('type Query { a(x: Int): Int b: Int }');
  const cache = (maxBytes?: number) => new DocumentCache({ schema, rules: specifiedRules, maxTokens: 50, maxBytes });

  it('keeps a valid text parsed once; syntax errors, invalid documents and texts over the token limit are refused and not kept', () => {
    const docs = cache();
    const a = docs.load('{ a(x: 1) }').document!;
    expect(docs.load('{ a(x: 1) }').document).toBe(a);
    expect(a.loc).toBeUndefined();
    expect([docs.size, docs.bytes > 0]).toEqual([1, true]);
    const bytes = docs.bytes;

    const syntax = docs.load('{ a(x: 1 ');
    expect(syntax).toMatchObject({ phase: 'parse', errors: [expect.objectContaining({ message: expect.stringContaining('Syntax Error') })] });
    const invalid = docs.load('{ a(x: "one") nope }');
    expect(invalid.phase).toBe('validation');
    expect(invalid.errors!.map((e) => e.message)).toEqual(['Int cannot represent non-integer value: "one"', 'Cannot query field "nope" on type "Query".']);
    // the errors point at the spot, though cached documents have no locations
    expect(invalid.errors![1]!.locations).toEqual([{ line: 1, column: 15 }]);
    const tooLong = docs.load(`{ ${'b '.repeat(51)}}`);
    expect(tooLong).toMatchObject({ phase: 'parse', errors: [expect.objectContaining({ message: expect.stringContaining('more that 50 tokens') })] });
    expect(docs.load(`{ ${'b '.repeat(47)}}`).document).toBeDefined(); // 49 tokens with the braces
    expect(docs.size).toBe(2);
    for (let i = 0; i < 100; i++) docs.load(`{ a(x: ${i}) c${i} }`);
    expect(docs.size).toBe(2);
    expect(docs.load('{ a(x: 1) }').document).toBe(a);
    expect(docs.bytes).toBeGreaterThan(bytes);
  });

  it('stays within its byte budget, forgetting the least recently used document first', () => {
    const docs = cache(40_000);
    const first = docs.load('{ a(x: 0) }').document!;
    const seen: DocumentNode[] = [];
    for (let i = 1; i < 300; i++) {
      seen[i] = docs.load(`{ a(x: ${i}) b }`).document!;
      // a document in use stays: every lookup makes it the most recent
      expect(docs.load('{ a(x: 0) }').document).toBe(first);
      expect(docs.bytes).toBeLessThanOrEqual(40_000);
    }
    const others = docs.size - 1;
    expect(others).toBeGreaterThan(10);
    expect(others).toBeLessThan(299);
    // the ones kept are the most recent
    for (let i = 299; i > 299 - others; i--) expect(docs.load(`{ a(x: ${i}) b }`).document).toBe(seen[i]);
    expect(docs.load(`{ a(x: ${299 - others}) b }`).document).not.toBe(seen[299 - others]);
  });

  it('keeps nothing larger than its budget, and nothing at all with a budget of 0', () => {
    const small = cache(500);
    expect(small.load(`{ ${'b '.repeat(40)}}`).document).toBeDefined();
    expect([small.size, small.bytes]).toEqual([0, 0]);
    const none = cache(0);
    const d = none.load('{ b }').document;
    expect(none.load('{ b }').document).not.toBe(d);
    expect(none.size).toBe(0);
  });
});

describe('over WebSocket (development)', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ GRAPHQL_MAX_TOKENS: '300', MAX_SUBSCRIPTIONS_PER_CONNECTION: '3', GRAPHQL_INTROSPECTION: 'false' });
  });
  afterAll(() => s?.stop());

  const createVision = async (user: string) => (await s.gql(CreateVisionDocument, {}, { user })).data!.createVision.id;

  it('a syntax error is an error message for that operation (BAD_USER_INPUT, GRAPHQL_PARSE_FAILED); the socket stays open and the next subscription works', async () => {
    const user = newUser('ws-doc');
    const visionId = await createVision(user);
    const { c, log } = connect(s.url, { user });
    const r = await run(c, '{ visions { totalCount ');
    expect(r.errors).toHaveLength(1);
    expect(r.errors![0]!.message).toContain('Syntax Error');
    expect(r.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'GRAPHQL_PARSE_FAILED' });
    const sub = collect(c, MessageAddedDocument, { visionId });
    await deliver(s, visionId, [sub]);
    expect(sub.errors).toEqual([]);
    expect(log).toEqual({ connected: 1, closed: [] });
    sub.stop();
    await c.dispose();
  });

  it('queries and mutations work; their errors carry the contract codes and equal those over HTTP', async () => {
    const user = newUser('ws-doc');
    const other = newUser('ws-doc');
    const othersVision = await createVision(other);
    const { c, log } = connect(s.url, { user });

    const created = await run(c, print(CreateVisionDocument), { input: { title: 'Over WebSocket' } });
    expect(created.errors).toBeUndefined();
    const id = created.data.createVision.id as string;
    const read = await run(c, print(GetVisionDocument), { id });
    expect(read).toEqual({ data: { vision: expect.objectContaining({ id, title: 'Over WebSocket', status: 'ACTIVE' }) } });
    expect((await s.gql(GetVisionDocument, { id }, { user })).data!.vision!.title).toBe('Over WebSocket');

    const cases: [string, Record<string, unknown> | undefined, string][] = [
      ['{ vision(id: "not-a-uuid") { id } }', undefined, 'BAD_USER_INPUT'],
      [print(SendMessageDocument), { input: { visionId: othersVision, content: 'hi' } }, 'NOT_FOUND'],
      // variables that do not fit their types: BAD_USER_INPUT as Apollo makes them
      ['query ($first: Int) { visions(first: $first) { totalCount } }', { first: 'many' }, 'BAD_USER_INPUT'],
      ['query ($first: Int) { visions(first: $first) { totalCount } }', { first: 5000 }, 'BAD_USER_INPUT'],
    ];
    for (const [query, variables, code] of cases) {
      const ws = await run(c, query, variables);
      const http = await s.gql(query, variables, { user });
      expect(ws.errors?.map((e) => e.extensions?.code)).toEqual([code]);
      expect(withoutLocations(ws.errors)).toEqual(withoutLocations(http.errors));
      expect(ws.data ?? null).toEqual(http.data ?? null);
    }

    // document errors are formatted exactly as over HTTP
    const documents = [
      '{ vision(id: "x") { titel } }', // unknown field (with suggestions outside production) and a missing argument
      'query A { visions { totalCount } } query B { visions { totalCount } }', // which operation?
      `{ ${Array.from({ length: 16 }, (_, i) => `a${i}: visions { totalCount }`).join(' ')} }`, // graphql-armor: aliases
    ];
    for (const query of documents) {
      const ws = await run(c, query);
      const http = await s.gql(query, undefined, { user });
      expect(ws.errors!.every((e) => e.extensions?.code === 'BAD_USER_INPUT')).toBe(true);
      expect(ws.errors).toEqual(http.errors);
    }
    const named = await run(c, 'query A { visions { totalCount } } query B { visions { totalCount } }', undefined);
    expect(named.errors![0]!.extensions).toEqual({ code: 'BAD_USER_INPUT', reason: 'OPERATION_RESOLUTION_FAILURE' });
    // introspection is off on this server, over WebSocket too
    const introspection = await run(c, '{ __schema { queryType { name } } }');
    expect(introspection.errors![0]!.extensions).toEqual({ code: 'BAD_USER_INPUT', reason: 'GRAPHQL_VALIDATION_FAILED' });
    expect(log).toEqual({ connected: 1, closed: [] });
    await c.dispose();
  });

  it('a document over the token limit is refused (BAD_USER_INPUT) and not kept; neither are other bad documents', async () => {
    const load = jest.spyOn(DocumentCache.prototype, 'load');
    try {
      const user = newUser('ws-doc');
      const { c, log } = connect(s.url, { user });
      expect((await run(c, '{ visions { totalCount } }')).errors).toBeUndefined();
      // the server's cache, found through the call just made
      const cache = load.mock.contexts.at(-1) as DocumentCache;
      const before = { size: cache.size, bytes: cache.bytes };

      const big = await run(c, bigQuery(60));
      expect(big.errors).toHaveLength(1);
      expect(big.errors![0]!.message).toContain('more that 300 tokens');
      expect(big.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'GRAPHQL_PARSE_FAILED' });
      for (let i = 0; i < 30; i++) {
        const bad = [bigQuery(60 + i), `{ visions(first: ${i}) { nope${i} } }`, `{ visions(first: ${i}) { totalCount `][i % 3]!;
        const r = await run(c, bad);
        expect(r.errors![0]!.extensions!.code).toBe('BAD_USER_INPUT');
      }
      expect({ size: cache.size, bytes: cache.bytes }).toEqual(before);
      expect((await run(c, '{ visions(first: 3) { totalCount } }')).errors).toBeUndefined();
      expect(cache.size).toBe(before.size + 1);
      expect(log).toEqual({ connected: 1, closed: [] });
      await c.dispose();
    } finally {
      load.mockRestore();
    }
  });

  it('exactly MAX_SUBSCRIPTIONS_PER_CONNECTION subscriptions are active on one connection; the next is RATE_LIMITED; one that ends frees its place', async () => {
    const user = newUser('ws-doc');
    const visionId = await createVision(user);
    const { c } = connect(s.url, { user });
    const subs = [0, 1, 2].map(() => collect(c, MessageAddedDocument, { visionId }));
    await deliver(s, visionId, subs);
    const over = collect(c, MessageAddedDocument, { visionId });
    await over.ended;
    expect(over.errors).toEqual([[expect.objectContaining({ extensions: expect.objectContaining({ code: 'RATE_LIMITED' }) })]]);
    subs[0]!.stop();
    const next = collect(c, MessageAddedDocument, { visionId });
    await deliver(s, visionId, [next, subs[1]!, subs[2]!]);
    const again = collect(c, MessageAddedDocument, { visionId });
    await again.ended;
    expect(JSON.stringify(again.errors)).toContain('RATE_LIMITED');
    for (const sub of [...subs, next]) expect(sub.errors).toEqual([]);
    for (const sub of [...subs, next]) sub.stop();
    await c.dispose();
  });
});

describe('over WebSocket (production)', () => {
  const SECRET = 'production-secret-production-secret-0123';
  let s: TestServer;
  let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
  beforeAll(async () => {
    // its own database: a table is dropped on purpose
    scratch = await createScratchDatabase();
    s = await startTestServer({ NODE_ENV: 'production', AUTH_JWT_SECRET: SECRET, OPENAI_API_KEY: 'k', DATABASE_URL: scratch.url });
  });
  afterAll(async () => {
    await s?.stop();
    await scratch?.drop();
  });
  const token = () =>
    new SignJWT({ sub: newUser('ws-prod') }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(SECRET));

  it('suggests no field names, sends no stack traces, and hides internal errors as over HTTP', async () => {
    const t = await token();
    const { c, log } = connect(s.url, { token: t });
    const misspelled = await run(c, '{ vision(id: "x") { titel } }');
    expect(misspelled.errors![0]!.extensions).toEqual({ code: 'BAD_USER_INPUT', reason: 'GRAPHQL_VALIDATION_FAILED' });
    expect(misspelled.errors![0]!.message).toBe('Cannot query field "titel" on type "Vision".');
    const enumValue = await run(c, 'query ($s: [VisionStatus!]) { visions(status: $s) { totalCount } }', { s: ['ACTIV'] });
    expect(enumValue.errors![0]!.extensions!.code).toBe('BAD_USER_INPUT');
    const syntax = await run(c, '{ visions');
    expect(syntax.errors![0]!.extensions).toEqual({ code: 'BAD_USER_INPUT', reason: 'GRAPHQL_PARSE_FAILED' });
    const notFound = await run(c, '{ vision(id: "not-a-uuid") { id } }');
    expect(notFound.errors![0]!.extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'id' });
    const all = JSON.stringify([misspelled, enumValue, syntax, notFound]);
    expect(all).not.toContain('Did you mean');
    expect(all).not.toContain('stacktrace');

    await s.sql('drop table tokenscount');
    const broken = await run(c, '{ tokenUsage { calls } }');
    expect(broken.errors).toEqual([{ message: 'Internal server error', path: ['tokenUsage'], extensions: { code: 'INTERNAL_SERVER_ERROR' } }]);
    const http = await s.gql('{ tokenUsage { calls } }', undefined, { token: t });
    expect(broken).toEqual({ data: http.data, errors: http.errors });
    expect(JSON.stringify(broken)).not.toMatch(/tokenscount|select|relation|stack/i);
    expect(log).toEqual({ connected: 1, closed: [] });
    await c.dispose();
  });
});
