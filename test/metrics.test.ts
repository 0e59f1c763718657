/**
 * GET /metrics (Prometheus) scraped over real HTTP from the real server, before and after real
 * operations (HTTP and WebSocket), model calls against the fake OpenAI server, and the rules of
 * where and to whom /metrics is served. Counters are compared by how much they moved; timings
 * are never asserted (only how many observations a histogram got).
 */
import { randomUUID } from 'node:crypto';
import type { Client as WsClient } from 'graphql-ws';
import { print } from 'graphql';
import { createClient as createSseClient } from 'graphql-sse';
import { createScratchDatabase } from './support/db';
import { startFakeOpenAI, type FakeOpenAI } from './support/fake-openai';
import { errorCode, newUser, startTestServer, type TestServer } from './support/server';
import { waitUntil } from './support/wait';
import { collect, wsClient } from './support/ws';
import { CreateVisionDocument, GetVisionDocument, MessageAddedDocument, RenameVisionDocument, SendMessageDocument } from './generated/graphql';

const TOKEN = 'metrics-token-0123456789abcdef';
const JWT_SECRET = 'production-secret-production-secret-0123';

// ------------------------------------------------------------------ scraping

type Labels = Record<string, string>;
interface Sample {
  name: string;
  labels: Labels;
  value: number;
}

class Scrape {
  constructor(readonly samples: Sample[]) {}

  /** The value of the series with exactly these labels (0 when there is none). */
  value(name: string, labels: Labels = {}): number {
    return this.find(name, labels)?.value ?? 0;
  }

  find(name: string, labels: Labels = {}): Sample | undefined {
    const want = JSON.stringify(Object.entries(labels).sort());
    return this.samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want);
  }

  /** Every series of a metric whose labels include these. */
  all(name: string, labels: Labels = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }
}

function parseExposition(text: string): Scrape {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Labels = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return new Scrape(samples);
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

async function scrape(base: string, headers: Record<string, string> = {}): Promise<Scrape> {
  const r = await get(`${base}/metrics`, headers);
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(r.text);
}

// ------------------------------------------------------------------ one server, many operations

describe('GET /metrics counts what the server does', () => {
  let fake: FakeOpenAI;
  let s: TestServer;
  const clients: WsClient[] = [];

  beforeAll(async () => {
    fake = await startFakeOpenAI();
    s = await startTestServer({
      OPENAI_API_KEY: 'test-key',
      OPENAI_BASE_URL: fake.baseURL,
      LLM_MAX_RETRIES: '0',
      LLM_TIMEOUT_MS: '3000',
      REPLY_FLUSH_MS: '100',
      SUMMARIES: 'false',
    });
  });
  beforeEach(() => fake.reset());
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.dispose();
  });
  afterAll(async () => {
    await s?.stop();
    await fake?.close();
  });

  const ops = 'visionpath_graphql_operations_total';
  const opCount = (sc: Scrape, operation: string, type: string, code: string, transport = 'http') => sc.value(ops, { operation, type, code, transport });

  async function createVision(user: string): Promise<string> {
    const r = await s.gql(CreateVisionDocument, { input: { title: 'Metrics' } }, { user });
    expect(r.errors).toBeUndefined();
    return r.data!.createVision.id;
  }

  test('HTTP operations by name, type and error code, with a latency histogram', async () => {
    const user = newUser('metrics-ops');
    const before = await scrape(s.url);

    await createVision(user);
    await createVision(user);
    expect(errorCode(await s.gql(RenameVisionDocument, { id: randomUUID(), title: 'x' }, { user }))).toBe('NOT_FOUND');
    expect((await s.gql(GetVisionDocument, { id: randomUUID() }, { user })).errors).toBeUndefined();
    expect((await s.gql('{ visions(first: 1) { totalCount } }', undefined, { user })).errors).toBeUndefined();
    expect(errorCode(await s.gql('query Broken { nope }', undefined, { user }))).toBe('BAD_USER_INPUT');

    const after = await scrape(s.url);
    const moved = (operation: string, type: string, code: string) => opCount(after, operation, type, code) - opCount(before, operation, type, code);
    expect(moved('CreateVision', 'mutation', 'OK')).toBe(2);
    expect(moved('RenameVision', 'mutation', 'NOT_FOUND')).toBe(1);
    expect(moved('RenameVision', 'mutation', 'OK')).toBe(0);
    expect(moved('GetVision', 'query', 'OK')).toBe(1);
    expect(moved('anonymous', 'query', 'OK')).toBe(1);
    // a document that does not validate has no operation: its client-chosen name is not a label
    expect(moved('unknown', 'unknown', 'BAD_USER_INPUT')).toBe(1);
    expect(after.all(ops, { operation: 'Broken' })).toEqual([]);

    const hist = 'visionpath_graphql_operation_duration_seconds_count';
    const timed = (sc: Scrape) => sc.value(hist, { operation: 'CreateVision', type: 'mutation', transport: 'http' });
    expect(timed(after) - timed(before)).toBe(2);
    expect(after.find('visionpath_graphql_operation_duration_seconds_bucket', { operation: 'CreateVision', type: 'mutation', transport: 'http', le: '+Inf' })?.value).toBe(timed(after));
  });

  test('HTTP responses by route and status, those Fastify refuses before any handler included', async () => {
    const http = 'visionpath_http_responses_total';
    const before = await scrape(s.url);
    const post = (body: string, type = 'application/json') => fetch(`${s.url}/graphql`, { method: 'POST', headers: { 'content-type': type, 'x-user-id': newUser('metrics-http') }, body });
    expect((await post('{"query": "{ visions(first: 1) { totalCount } }"}')).status).toBe(200);
    expect((await post('{"query": ')).status).toBe(400); // bad JSON: refused by Fastify's parser
    expect((await post('query', 'text/x-unknown')).status).toBe(415);
    expect((await fetch(`${s.url}/nowhere`)).status).toBe(404);
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    const after = await scrape(s.url);
    const moved = (route: string, status: string) => after.value(http, { route, status }) - before.value(http, { route, status });
    expect(moved('/graphql', '200')).toBe(1);
    expect(moved('/graphql', '400')).toBe(1);
    expect(moved('/graphql', '415')).toBe(1);
    expect(moved('unmatched', '404')).toBe(1);
    expect(moved('/healthz', '200')).toBe(1);
    // the scrape before this one was answered, and counted
    expect(moved('/metrics', '200')).toBe(1);
  });

  test('model calls by purpose and outcome, tokens as the model reported them, replies in flight', async () => {
    const user = newUser('metrics-model');
    const visionId = await createVision(user);
    const before = await scrape(s.url);
    expect(before.value('visionpath_replies_in_flight')).toBe(0);

    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    fake.enqueue({ kind: 'stream', chunks: ['Keep', ' going', '.'], usage: { prompt_tokens: 123, completion_tokens: 45, total_tokens: 168 }, hold: held });
    const sent = s.gql(SendMessageDocument, { input: { visionId, content: 'How do I start?' } }, { user });
    try {
      await waitUntil('a reply in flight', async () => (await scrape(s.url)).value('visionpath_replies_in_flight') === 1);
    } finally {
      release();
    }
    expect((await sent).errors).toBeUndefined();
    // sendMessage answers once the reply is stored: everything about its call is counted by then
    const done = await scrape(s.url);
    expect(done.value('visionpath_replies_in_flight')).toBe(0);
    const calls = (sc: Scrape, outcome: string) => sc.value('visionpath_model_calls_total', { purpose: 'reply', outcome });
    expect(calls(done, 'complete') - calls(before, 'complete')).toBe(1);
    const tokens = (sc: Scrape, kind: string, source: string) => sc.value('visionpath_model_tokens_total', { purpose: 'reply', kind, source });
    expect(tokens(done, 'prompt', 'provider') - tokens(before, 'prompt', 'provider')).toBe(123);
    expect(tokens(done, 'completion', 'provider') - tokens(before, 'completion', 'provider')).toBe(45);
    const ttft = (sc: Scrape) => sc.value('visionpath_model_time_to_first_token_seconds_count', { purpose: 'reply' });
    expect(ttft(done) - ttft(before)).toBe(1);
    const total = (sc: Scrape) => sc.value('visionpath_model_call_duration_seconds_count', { purpose: 'reply', outcome: 'complete' });
    expect(total(done) - total(before)).toBe(1);
    const sends = (sc: Scrape, code: string) => opCount(sc, 'SendMessage', 'mutation', code);
    expect(sends(done, 'OK') - sends(before, 'OK')).toBe(1);

    // a call the provider refuses: outcome is the failure reason; no usage, so the tokens counted
    // are the estimate the tokenscount row holds, and there was no first token
    fake.enqueue({ kind: 'status', status: 500 });
    const failed = await s.gql(SendMessageDocument, { input: { visionId, content: 'And then?' } }, { user });
    expect(errorCode(failed)).toBe('LLM_FAILED');
    const replyId = String(failed.errors![0]!.extensions!.replyId);
    const end = await scrape(s.url);
    expect(calls(end, 'upstream_error') - calls(before, 'upstream_error')).toBe(1);
    expect(sends(end, 'LLM_FAILED') - sends(before, 'LLM_FAILED')).toBe(1);
    const [row] = await s.sql<{ prompttokens: number; completiontokens: number }>(
      `select prompttokens, completiontokens from tokenscount where meta ->> 'messageid' = ?`,
      [replyId],
    );
    expect(Number(row!.prompttokens)).toBeGreaterThan(0);
    expect(tokens(end, 'prompt', 'estimate') - tokens(before, 'prompt', 'estimate')).toBe(Number(row!.prompttokens));
    expect(tokens(end, 'prompt', 'provider')).toBe(tokens(done, 'prompt', 'provider'));
    expect(ttft(end)).toBe(ttft(done));
  });

  test('WebSocket connections, subscriptions and operations', async () => {
    const user = newUser('metrics-ws');
    const visionId = await createVision(user);
    const before = await scrape(s.url);
    // not lazy: the socket stays open between operations
    const client = wsClient(s.url, { user }, { lazy: false });
    clients.push(client);

    const sub = collect(client, MessageAddedDocument, { visionId });
    const up = await waitUntil('a subscription on a connection', async () => {
      const sc = await scrape(s.url);
      return sc.value('visionpath_ws_subscriptions') === before.value('visionpath_ws_subscriptions') + 1 && sc;
    });
    expect(up.value('visionpath_ws_connections')).toBe(before.value('visionpath_ws_connections') + 1);
    expect(opCount(up, 'MessageAdded', 'subscription', 'OK', 'ws') - opCount(before, 'MessageAdded', 'subscription', 'OK', 'ws')).toBe(1);

    // a mutation over the same socket, refused with NOT_FOUND, counts as over HTTP
    const result = await new Promise<{ errors?: readonly { extensions?: Record<string, unknown> }[] }>((resolve, reject) => {
      let got: { errors?: readonly { extensions?: Record<string, unknown> }[] } = {};
      client.subscribe({ query: print(RenameVisionDocument), variables: { id: randomUUID(), title: 'x' } }, { next: (r) => (got = r), error: reject, complete: () => resolve(got) });
    });
    expect(result.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    // a subscription to someone else's (or no) vision is refused as it starts: not a running one
    const foreign = collect(client, MessageAddedDocument, { visionId: randomUUID() });
    await foreign.ended;
    expect(JSON.stringify(foreign.errors)).toContain('NOT_FOUND');
    // an operation the socket's limits refuse before it runs still counts, without a name
    const refused = await new Promise<unknown>((resolve) => {
      client.subscribe({ query: '{ nope }' }, { next: () => undefined, error: resolve, complete: () => resolve(undefined) });
    });
    expect(JSON.stringify(refused)).toContain('BAD_USER_INPUT');

    const mid = await scrape(s.url);
    expect(opCount(mid, 'RenameVision', 'mutation', 'NOT_FOUND', 'ws') - opCount(before, 'RenameVision', 'mutation', 'NOT_FOUND', 'ws')).toBe(1);
    expect(opCount(mid, 'MessageAdded', 'subscription', 'NOT_FOUND', 'ws') - opCount(before, 'MessageAdded', 'subscription', 'NOT_FOUND', 'ws')).toBe(1);
    expect(opCount(mid, 'MessageAdded', 'subscription', 'OK', 'ws')).toBe(opCount(up, 'MessageAdded', 'subscription', 'OK', 'ws'));
    expect(opCount(mid, 'unknown', 'unknown', 'BAD_USER_INPUT', 'ws') - opCount(before, 'unknown', 'unknown', 'BAD_USER_INPUT', 'ws')).toBe(1);
    expect(mid.value('visionpath_ws_subscriptions')).toBe(up.value('visionpath_ws_subscriptions'));

    // the subscription ends: its gauge goes down while the socket stays
    sub.stop();
    await waitUntil('the subscription gone', async () => (await scrape(s.url)).value('visionpath_ws_subscriptions') === before.value('visionpath_ws_subscriptions'));
    expect((await scrape(s.url)).value('visionpath_ws_connections')).toBe(before.value('visionpath_ws_connections') + 1);
    await client.dispose();
    await waitUntil('the connection gone', async () => (await scrape(s.url)).value('visionpath_ws_connections') === before.value('visionpath_ws_connections'));
  });

  test('operations over SSE count with transport "sse": a subscription as it starts, refusals with their code', async () => {
    const user = newUser('metrics-sse');
    const visionId = await createVision(user);
    const before = await scrape(s.url);
    const sse = createSseClient({ url: `${s.url}/graphql/stream`, headers: { 'x-user-id': user }, retryAttempts: 0 });
    try {
      // a running subscription (its first event: a message added through HTTP)
      const events: unknown[] = [];
      const stop = sse.subscribe({ query: print(MessageAddedDocument), variables: { visionId } }, { next: (e) => void events.push(e), error: () => undefined, complete: () => undefined });
      await waitUntil('the SSE subscription counted', async () => {
        const sc = await scrape(s.url);
        return opCount(sc, 'MessageAdded', 'subscription', 'OK', 'sse') === opCount(before, 'MessageAdded', 'subscription', 'OK', 'sse') + 1;
      });
      stop();
      // someone else's vision: refused as it starts
      const foreign = await new Promise<unknown[]>((resolve) => {
        const got: unknown[] = [];
        sse.subscribe({ query: print(MessageAddedDocument), variables: { visionId: randomUUID() } }, { next: (e) => void got.push(e), error: (e) => resolve([e]), complete: () => resolve(got) });
      });
      expect(JSON.stringify(foreign)).toContain('NOT_FOUND');
      // a document that does not validate: no name of the client's becomes a label
      const invalid = await new Promise<unknown[]>((resolve) => {
        const got: unknown[] = [];
        sse.subscribe({ query: 'query Invented { nope }' }, { next: (e) => void got.push(e), error: (e) => resolve([e]), complete: () => resolve(got) });
      });
      expect(JSON.stringify(invalid)).toContain('BAD_USER_INPUT');
      // a query over SSE, with its result
      const vision = await new Promise<any[]>((resolve) => {
        const got: any[] = [];
        sse.subscribe({ query: print(GetVisionDocument), variables: { id: visionId } }, { next: (e) => void got.push(e), error: (e) => resolve([e]), complete: () => resolve(got) });
      });
      expect(vision[0]?.data?.vision?.id).toBe(visionId);
      const after = await scrape(s.url);
      const moved = (op: string, type: string, code: string) => opCount(after, op, type, code, 'sse') - opCount(before, op, type, code, 'sse');
      expect(moved('MessageAdded', 'subscription', 'OK')).toBe(1);
      expect(moved('MessageAdded', 'subscription', 'NOT_FOUND')).toBe(1);
      expect(moved('unknown', 'unknown', 'BAD_USER_INPUT')).toBe(1);
      expect(moved('GetVision', 'query', 'OK')).toBe(1);
      expect(after.value(ops, { operation: 'Invented', type: 'query', code: 'BAD_USER_INPUT', transport: 'sse' })).toBe(0);
    } finally {
      sse.dispose();
    }
  });

  test('the database pool and the job queue are read at scrape time', async () => {
    const sc = await scrape(s.url);
    expect(sc.find('visionpath_db_pool_connections', { state: 'max' })?.value).toBe(5); // DB_POOL_MAX of test servers
    for (const state of ['used', 'free', 'pending']) expect(sc.find('visionpath_db_pool_connections', { state })?.value).toBeGreaterThanOrEqual(0);
    const waiting = sc.all('visionpath_job_queue_depth', { state: 'waiting' });
    expect(waiting.length).toBeGreaterThan(0);
    for (const q of waiting) expect(sc.find('visionpath_job_queue_depth', { queue: q.labels.queue!, state: 'active' })).toBeDefined();
    expect(sc.value('visionpath_metrics_collect_errors_total', { source: 'jobs' })).toBe(0);
    // the process's own metrics come along
    expect(sc.all('process_cpu_user_seconds_total').length).toBe(1);
    expect(sc.all('nodejs_eventloop_lag_seconds').length).toBe(1);
  });

  // last: it fills this server's operation names
  test('operation names are bounded: 100 distinct, then "other"', async () => {
    const user = newUser('metrics-names');
    const reserved = new Set(['other', 'anonymous', 'unknown']);
    const named = (sc: Scrape) => new Set(sc.all(ops).map((x) => x.labels.operation!).filter((n) => !reserved.has(n)));
    const before = await scrape(s.url);
    const known = named(before).size;
    expect(known).toBeLessThan(100);
    const tag = Date.now().toString(36);
    for (let i = 0; i < 130; i++) {
      const r = await s.gql(`query N${tag}_${i} { __typename }`, undefined, { user });
      expect(r.errors).toBeUndefined();
    }
    // a name past 64 characters is not a label either
    expect((await s.gql(`query ${'L'.repeat(70)} { __typename }`, undefined, { user })).errors).toBeUndefined();

    const after = await scrape(s.url);
    expect(named(after).size).toBe(100);
    const other = (sc: Scrape) => sc.value(ops, { operation: 'other', type: 'query', code: 'OK', transport: 'http' });
    expect(other(after) - other(before)).toBe(130 - (100 - known) + 1);
    // the histogram is bounded the same way
    const series = new Set(after.all('visionpath_graphql_operation_duration_seconds_count').map((x) => x.labels.operation));
    expect([...series].filter((n) => !reserved.has(n!)).length).toBe(100);
  });
});

// ------------------------------------------------------------------ where /metrics is served

describe('who may scrape', () => {
  const servers: TestServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.stop();
  });
  const start = async (env: Record<string, string>) => {
    const s = await startTestServer(env);
    servers.push(s);
    return s;
  };
  const production = { NODE_ENV: 'production', AUTH_JWT_SECRET: JWT_SECRET, OPENAI_API_KEY: 'k' };

  test('production without METRICS_TOKEN: not on the public port (404), no metrics kept', async () => {
    const s = await start(production);
    expect((await get(`${s.url}/metrics`)).status).toBe(404);
    expect((await get(`${s.url}/metrics`, { authorization: `Bearer ${TOKEN}` })).status).toBe(404);
    expect(s.server.metrics).toBeUndefined();
  });

  test('METRICS_TOKEN: 401 without the bearer or with a wrong one, 200 with it', async () => {
    const s = await start({ ...production, METRICS_TOKEN: TOKEN });
    const none = await get(`${s.url}/metrics`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(none.text).not.toContain('visionpath_');
    expect((await get(`${s.url}/metrics`, { authorization: `Bearer ${TOKEN}x` })).status).toBe(401);
    expect((await get(`${s.url}/metrics`, { authorization: `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}` })).status).toBe(401);
    expect((await get(`${s.url}/metrics`, { authorization: TOKEN })).status).toBe(401);
    const ok = await scrape(s.url, { authorization: `Bearer ${TOKEN}` });
    expect(ok.all('visionpath_replies_in_flight')).toHaveLength(1);
  });

  test('METRICS_PORT: served on its own listener only, closed with the server', async () => {
    const s = await start({ METRICS_PORT: '0' });
    const metricsUrl = s.server.metricsUrl!;
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(metricsUrl).not.toBe(s.url);
    expect((await get(`${s.url}/metrics`)).status).toBe(404);
    expect((await get(`${metricsUrl}/graphql`)).status).toBe(404);

    const user = newUser('metrics-port');
    const before = await scrape(metricsUrl);
    expect((await s.gql(CreateVisionDocument, { input: {} }, { user })).errors).toBeUndefined();
    const after = await scrape(metricsUrl);
    const created = (sc: Scrape) => sc.value('visionpath_graphql_operations_total', { operation: 'CreateVision', type: 'mutation', code: 'OK', transport: 'http' });
    expect(created(after) - created(before)).toBe(1);

    await s.stop();
    servers.splice(servers.indexOf(s), 1);
    await expect(fetch(`${metricsUrl}/metrics`)).rejects.toThrow();
  });

  test('METRICS_PORT with METRICS_TOKEN asks for the token there too', async () => {
    const s = await start({ METRICS_PORT: '0', METRICS_TOKEN: TOKEN });
    expect((await get(`${s.server.metricsUrl}/metrics`)).status).toBe(401);
    await scrape(s.server.metricsUrl!, { authorization: `Bearer ${TOKEN}` });
  });

  test('METRICS=false: no /metrics at all', async () => {
    const s = await start({ METRICS: 'false' });
    expect((await get(`${s.url}/metrics`)).status).toBe(404);
    expect(s.server.metrics).toBeUndefined();
  });
});

// ------------------------------------------------------------------ embeddings

describe('embedding calls', () => {
  let fake: FakeOpenAI;
  let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
  let s: TestServer;
  beforeAll(async () => {
    fake = await startFakeOpenAI();
    // its own empty database: the embedding backfill of this server then has nothing to do
    scratch = await createScratchDatabase('vp_metrics');
    s = await startTestServer({ DATABASE_URL: scratch.url, OPENAI_API_KEY: 'test-key', OPENAI_BASE_URL: fake.baseURL, LLM_MAX_RETRIES: '0', EMBEDDINGS: 'true', SUMMARIES: 'false' });
  });
  afterAll(async () => {
    await s?.stop();
    await fake?.close();
    await scratch?.drop();
  });

  test('a semantic search embeds its query: counted with purpose "embedding" and the reported tokens', async () => {
    const user = newUser('metrics-embed');
    const before = await scrape(s.url);
    const r = await s.gql(`query Find($q: String!) { searchMessages(query: $q, mode: SEMANTIC, first: 5) { edges { cursor } } }`, { q: 'morning run before work' }, { user });
    expect(r.errors).toBeUndefined();
    const after = await scrape(s.url);
    const [row] = await s.sql<{ prompttokens: number }>(`select prompttokens from tokenscount where clientid = ? and meta ->> 'purpose' = 'embedding'`, [user]);
    expect(Number(row!.prompttokens)).toBeGreaterThan(0);
    const calls = (sc: Scrape) => sc.value('visionpath_model_calls_total', { purpose: 'embedding', outcome: 'complete' });
    expect(calls(after) - calls(before)).toBe(1);
    const tokens = (sc: Scrape) => sc.value('visionpath_model_tokens_total', { purpose: 'embedding', kind: 'prompt', source: 'provider' });
    expect(tokens(after) - tokens(before)).toBe(Number(row!.prompttokens));
    expect(after.all('visionpath_model_time_to_first_token_seconds_count', { purpose: 'embedding' })).toEqual([]);
  });
});
