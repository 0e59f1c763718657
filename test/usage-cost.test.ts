/**
 * Usage as money (issue 14, part 2): every tokenscount row is priced when written and when
 * settled, at the price then in force (MODEL_PRICES over the dated default table), cached prompt
 * tokens as cached and never twice; stopped, failed and estimated calls, embeddings and rows
 * settled by a sweeper are priced too; `costUsd` is null when a row of the group has no price.
 * Real server and PostgreSQL, the official SDK against a fake model.
 */
import { loadConfig } from '../src/config';
import { poolRunner } from '../src/db/sql';
import { settleAbandonedCalls } from '../src/tokenscount/call-model';
import { DEFAULT_PRICES, PriceTable } from '../src/tokenscount/prices';
import { CreateVisionDocument, SendMessageDocument, StopReplyDocument } from './generated/graphql';
import { createScratchDatabase } from './support/db';
import { startFakeOpenAI, type FakeOpenAI } from './support/fake-openai';
import { newUser, startTestServer, type TestServer } from './support/server';
import { waitUntil } from './support/wait';

let fake: FakeOpenAI;
let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let server: TestServer;

const PRICES = { 'coach-model': { input: 2, cachedInput: 0.5, output: 8 }, 'text-embedding-3-small': { input: 0.02, output: 0 } };
const env = (model: string, prices = PRICES) => ({
  DATABASE_URL: scratch.url,
  OPENAI_API_KEY: 'test-key',
  OPENAI_BASE_URL: fake.baseURL,
  OPENAI_MODEL: model,
  LLM_MAX_RETRIES: '0',
  LLM_TIMEOUT_MS: '3000',
  SUMMARIES: 'false',
  MODEL_PRICES: JSON.stringify(prices),
});

beforeAll(async () => {
  fake = await startFakeOpenAI();
  scratch = await createScratchDatabase('vp_cost');
  server = await startTestServer(env('coach-model'));
});
beforeEach(() => fake.reset());
afterAll(async () => {
  await server?.stop();
  await fake?.close();
  await scratch?.drop();
});

const USAGE = `query U($g: [UsageGroup!]!) { tokenUsage { calls costUsd } tokenUsageBreakdown(groupBy: $g) { model purpose usage { calls totalTokens costUsd } } }`;

async function visionOf(s: TestServer, user: string): Promise<string> {
  const r = await s.gql(CreateVisionDocument, { input: { title: 'Цена' } }, { user });
  return r.data!.createVision.id;
}

async function rowsOf(user: string): Promise<any[]> {
  return server.sql(`select id, model, prompttokens, completiontokens, costmicrousd::float8 as cost, state, meta from tokenscount where clientid = ? order by id`, [user]);
}

describe('cost of a call', () => {
  test('priced when settled: prompt minus cached at the input price, cached at the cached price, completion at the output price', async () => {
    const user = newUser();
    const visionId = await visionOf(server, user);
    fake.enqueue({ kind: 'stream', chunks: ['Hi', ' there'], usage: { prompt_tokens: 1000, completion_tokens: 200, total_tokens: 1200, prompt_tokens_details: { cached_tokens: 600 } } });
    expect((await server.gql(SendMessageDocument, { input: { visionId, content: 'Сколько это стоит?' } }, { user })).errors).toBeUndefined();
    const [row] = await rowsOf(user);
    // (1000 - 600) × 2 + 600 × 0.5 + 200 × 8 micro-USD
    expect(row).toMatchObject({ model: 'coach-model', state: 'settled', cost: 400 * 2 + 600 * 0.5 + 200 * 8 });
    const r = await server.gql<any, any>(USAGE, { g: ['MODEL'] }, { user });
    expect(r.data.tokenUsage).toEqual({ calls: 1, costUsd: 0.0027 });
    expect(r.data.tokenUsageBreakdown).toEqual([{ model: 'coach-model', purpose: null, usage: { calls: 1, totalTokens: 1200, costUsd: 0.0027 } }]);
  });

  test('a stopped stream and a failed one are priced like replies (estimates when the provider sent no usage)', async () => {
    const user = newUser();
    const visionId = await visionOf(server, user);
    let release!: () => void;
    fake.enqueue({ kind: 'stream', chunks: ['Part', 'ial'], hold: new Promise<void>((r) => (release = r)), usage: null });
    const sending = server.gql(SendMessageDocument, { input: { visionId, content: 'Стоп' } }, { user });
    await fake.waitForRequests(1);
    await waitUntil('the first chunk is saved', async () => (await server.gql(StopReplyDocument, { visionId }, { user })).data?.stopReply === true, 5000, 50);
    release();
    await sending;
    fake.enqueue({ kind: 'cut', chunks: ['Oops'] });
    await server.gql(SendMessageDocument, { input: { visionId, content: 'Ещё' } }, { user });
    const rows = await rowsOf(user);
    expect(rows.map((r) => r.meta.finish)).toEqual(['stopped', 'failed']);
    for (const r of rows) {
      expect(r.meta.estimated).toBe(true);
      expect(r.cost).toBe(r.prompttokens * 2 + r.completiontokens * 8);
      expect(r.cost).toBeGreaterThan(0);
    }
  });

  test('a model with no price has a null cost, and so has every group that holds one of its rows', async () => {
    const unpriced = await startTestServer(env('mystery-model'));
    try {
      const user = newUser();
      await unpriced.gql(SendMessageDocument, { input: { visionId: await visionOf(unpriced, user), content: 'Привет' } }, { user });
      await server.gql(SendMessageDocument, { input: { visionId: await visionOf(server, user), content: 'Привет' } }, { user });
      const rows = await rowsOf(user);
      expect(rows.map((r) => [r.model, r.cost === null])).toEqual([['mystery-model', true], ['coach-model', false]]);
      const r = await server.gql<any, any>(USAGE, { g: ['MODEL'] }, { user });
      expect(r.data.tokenUsage.costUsd).toBeNull();
      expect(r.data.tokenUsageBreakdown.map((b: any) => [b.model, b.usage.costUsd === null])).toEqual([['coach-model', false], ['mystery-model', true]]);
    } finally {
      await unpriced.stop();
    }
  });

  test('a later price change never rewrites history', async () => {
    const user = newUser();
    await server.gql(SendMessageDocument, { input: { visionId: await visionOf(server, user), content: 'Раз' } }, { user });
    const dearer = await startTestServer(env('coach-model', { ...PRICES, 'coach-model': { input: 20, cachedInput: 5, output: 80 } }));
    try {
      await dearer.gql(SendMessageDocument, { input: { visionId: await visionOf(dearer, user), content: 'Два' } }, { user });
    } finally {
      await dearer.stop();
    }
    const [before, after] = await rowsOf(user);
    expect(before!.cost).toBe(before!.prompttokens * 2 + before!.completiontokens * 8);
    expect(after!.cost).toBe(after!.prompttokens * 20 + after!.completiontokens * 80);
  });

  test('embeddings are priced at the embedding model\'s price', async () => {
    const s = await startTestServer({ ...env('coach-model'), EMBEDDINGS: 'true', JOBS_POLL_SECONDS: '1' });
    try {
      const user = newUser();
      await s.gql(SendMessageDocument, { input: { visionId: await visionOf(s, user), content: 'Пробежка утром' } }, { user });
      await waitUntil('embedding rows settled', async () => {
        const rows = await rowsOf(user);
        return rows.some((r) => r.meta.purpose === 'embedding' && r.state === 'settled');
      }, 15_000, 100);
      for (const r of (await rowsOf(user)).filter((x) => x.meta.purpose === 'embedding' && x.state === 'settled')) {
        expect(r.model).toBe('text-embedding-3-small');
        expect(r.cost).toBe(Math.round(r.prompttokens * 0.02));
      }
    } finally {
      await s.stop();
    }
  });

  test('rows of a dead process settled by the sweeper are priced from their estimates', async () => {
    const user = newUser();
    const [row] = await server.sql<{ id: string }>(
      `insert into tokenscount (clientid, clienttype, provider, model, prompttokens, completiontokens, totaltokens, meta, state, createdat)
       values (?, 'user', 'openai', 'coach-model', 300, 0, 300, '{"module":"vision","purpose":"reply"}', 'pending', now() - interval '1 hour') returning id`,
      [user],
    );
    const settled = await settleAbandonedCalls(poolRunner(server.db.orm.em), { olderThanMs: 60_000, prices: new PriceTable(loadConfig(env('coach-model')).llm.prices) });
    expect(settled).toBeGreaterThanOrEqual(1);
    const [after] = await server.sql(`select state, costmicrousd::float8 as cost, meta from tokenscount where id = ?`, [row!.id]);
    expect(after).toMatchObject({ state: 'settled', cost: 600, meta: { estimated: true, finish: 'failed' } });
  });
});

describe('MODEL_PRICES', () => {
  test('overrides and extends the dated default table; a bad value stops the start with a clear message', () => {
    const base = { NODE_ENV: 'test', DATABASE_URL: 'postgresql://x@127.0.0.1/x' };
    expect(loadConfig(base).llm.prices).toEqual(DEFAULT_PRICES);
    const prices = loadConfig({ ...base, MODEL_PRICES: '{"gpt-4.1":{"input":1,"output":2},"local":{"input":0,"output":0}}' }).llm.prices;
    expect(prices['gpt-4.1']).toEqual({ input: 1, cachedInput: 1, output: 2 });
    expect(prices.local).toEqual({ input: 0, cachedInput: 0, output: 0 });
    expect(prices['gpt-4o-mini']).toEqual(DEFAULT_PRICES['gpt-4o-mini']);
    expect(() => loadConfig({ ...base, MODEL_PRICES: 'nope' })).toThrow(/MODEL_PRICES is not valid JSON/);
    expect(() => loadConfig({ ...base, MODEL_PRICES: '{"m":{"input":-1,"output":1}}' })).toThrow(/MODEL_PRICES\["m"\]\.input must be a non-negative number/);
    expect(() => loadConfig({ ...base, MODEL_PRICES: '[1]' })).toThrow(/JSON object/);
    // a dated snapshot takes its family's price; the longest family wins
    const table = new PriceTable(DEFAULT_PRICES);
    expect(table.priceOf('gpt-4.1-mini-2025-04-14')).toEqual(DEFAULT_PRICES['gpt-4.1-mini']);
    expect(table.priceOf('gpt-4.1-2025-04-14')).toEqual(DEFAULT_PRICES['gpt-4.1']);
    expect(table.priceOf('gpt-4.10')).toBeNull();
    // cached tokens are part of the prompt and priced once
    expect(table.costMicroUsd('gpt-4.1', { promptTokens: 100, cachedPromptTokens: 500, completionTokens: 0 })).toBe(50);
  });
});
