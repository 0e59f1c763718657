/**
 * Token budgets (issue 14, part 3): a call that would pass the user's budget is refused before
 * anything reaches the model (QUOTA_EXCEEDED with period, limit, used and reset; the message is
 * kept, retryReply works after the reset); admissions are atomic across two instances; `budgets`
 * shows each budget. Real servers and PostgreSQL, the official SDK against a fake model.
 */
import pino from 'pino';
import { JobQueue } from '../src/jobs/queue';
import { QuotaExceededError } from '../src/tokenscount/budgets';
import { RetryReplyDocument, CreateVisionDocument, SendMessageDocument } from './generated/graphql';
import { createScratchDatabase } from './support/db';
import { startFakeOpenAI, type FakeOpenAI } from './support/fake-openai';
import { errorCode, newUser, startTestServer, type TestServer } from './support/server';
import { waitUntil } from './support/wait';

const LIMIT = 3000;
const RESERVE = 500;
let fake: FakeOpenAI;
let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let a: TestServer;
let b: TestServer;

beforeAll(async () => {
  fake = await startFakeOpenAI();
  scratch = await createScratchDatabase('vp_budget');
  const env = {
    DATABASE_URL: scratch.url,
    OPENAI_API_KEY: 'test-key',
    OPENAI_BASE_URL: fake.baseURL,
    LLM_MAX_RETRIES: '0',
    LLM_TIMEOUT_MS: '10000',
    SUMMARIES: 'false',
    USER_DAILY_TOKEN_BUDGET: String(LIMIT),
    USER_MONTHLY_TOKEN_BUDGET: String(LIMIT * 10),
    REPLY_TOKEN_RESERVE: String(RESERVE),
  };
  a = await startTestServer(env);
  b = await startTestServer(env);
});
beforeEach(() => fake.reset());
afterAll(async () => {
  await b?.stop();
  await a?.stop();
  await fake?.close();
  await scratch?.drop();
});

const BUDGETS = `{ budgets { period limitTokens usedTokens remainingTokens resetsAt } }`;
const chat = () => fake.requests.filter((r) => r.path.endsWith('/chat/completions'));

async function visionOf(s: TestServer, user: string): Promise<string> {
  return (await s.gql(CreateVisionDocument, { input: { title: 'Бюджет' } }, { user })).data!.createVision.id;
}

async function used(user: string, state?: string): Promise<number> {
  const [r] = await a.sql<{ n: string }>(`select coalesce(sum(totaltokens), 0)::text as n from tokenscount where clientid = ?${state ? ` and state = '${state}'` : ''}`, [user]);
  return Number(r!.n);
}

describe('token budgets', () => {
  test('the call that would pass the daily budget is refused with its extensions; nothing reaches the model; the message is kept; after the reset retryReply answers', async () => {
    const user = newUser();
    const visionId = await visionOf(a, user);
    // every answer uses its whole reservation: 100 prompt + 500 completion tokens
    fake.defaultBehaviour = { kind: 'stream', chunks: ['Ok.'], usage: { prompt_tokens: 100, completion_tokens: RESERVE, total_tokens: 100 + RESERVE } };
    let sent = 0;
    let refused: any;
    for (let i = 0; i < 10 && !refused; i++) {
      const r = await a.gql(SendMessageDocument, { input: { visionId, content: `Шаг ${i}` } }, { user });
      if (r.errors) refused = r;
      else sent++;
    }
    // refused once what is left cannot hold a prompt estimate and the reserve
    expect(sent).toBeGreaterThanOrEqual(3);
    expect(LIMIT - sent * (100 + RESERVE)).toBeLessThan(RESERVE + 300);
    expect(errorCode(refused)).toBe('QUOTA_EXCEEDED');
    const ext = refused.errors[0].extensions;
    const midnight = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1));
    expect(ext).toMatchObject({ period: 'DAY', limitTokens: LIMIT, usedTokens: sent * (100 + RESERVE), resetsAt: midnight.toISOString() });
    expect(refused.status).toBeLessThan(500);
    // nothing reached the model for it, each admitted call asked for at most its reservation
    expect(chat()).toHaveLength(sent);
    for (const r of chat()) expect(r.body.max_tokens).toBe(RESERVE);
    const rows = await a.sql(`select sender, state, content, payload from vision_messages where visionid = ? order by createdat desc, id desc limit 2`, [visionId]);
    expect(rows.map((m: any) => [m.sender, m.state])).toEqual([['assistant', 'failed'], ['user', 'complete']]);
    expect(rows[0].payload.error).toMatchObject({ reason: 'quota_exceeded', period: 'DAY' });

    const before = await a.gql<any, any>(BUDGETS, {}, { user });
    expect(before.data.budgets).toEqual([
      { period: 'DAY', limitTokens: LIMIT, usedTokens: sent * 600, remainingTokens: LIMIT - sent * 600, resetsAt: midnight.toISOString() },
      expect.objectContaining({ period: 'MONTH', limitTokens: LIMIT * 10, usedTokens: sent * 600 }),
    ]);
    const stillRefused = await a.gql(RetryReplyDocument, { visionId }, { user });
    expect(errorCode(stillRefused)).toBe('QUOTA_EXCEEDED');

    // the next UTC day: the daily budget is fresh, the monthly one still counts
    for (const s of [a, b]) s.server.budgets.now = () => new Date(midnight.getTime() + 60_000);
    try {
      const after = await a.gql<any, any>(BUDGETS, {}, { user });
      expect(after.data.budgets[0]).toEqual({ period: 'DAY', limitTokens: LIMIT, usedTokens: 0, remainingTokens: LIMIT, resetsAt: new Date(midnight.getTime() + 86_400_000).toISOString() });
      const retried = await a.gql(RetryReplyDocument, { visionId }, { user });
      expect(retried.errors).toBeUndefined();
      expect(retried.data!.retryReply.assistantMessage.state).toBe('COMPLETE');
    } finally {
      for (const s of [a, b]) s.server.budgets.now = () => new Date();
    }
  });

  test('20 concurrent sends on two instances: the calls in flight never reserve past the limit, and the spend ends within one reserve per admitted call', async () => {
    const user = newUser();
    const visions = [];
    for (let i = 0; i < 20; i++) visions.push(await visionOf(i % 2 ? b : a, user));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    fake.route = () => ({ kind: 'stream', chunks: ['Ok.'], hold: gate, usage: { prompt_tokens: 120, completion_tokens: RESERVE, total_tokens: 120 + RESERVE } });
    const outcomes: string[] = [];
    const sends = visions.map((visionId, i) =>
      (i % 2 ? b : a).gql(SendMessageDocument, { input: { visionId, content: `Параллельно ${i}` } }, { user }).then((r) => {
        outcomes.push(r.errors ? String(r.errors[0]!.extensions?.code) : 'ok');
      }),
    );
    // every send is either refused or holding its reservation at the model
    await waitUntil('all admitted or refused', async () => outcomes.length + chat().length === 20, 15_000, 20);
    const admitted = chat().length;
    expect(admitted).toBeGreaterThan(0);
    expect(outcomes.every((o) => o === 'QUOTA_EXCEEDED')).toBe(true);
    expect(await used(user, 'pending')).toBeLessThanOrEqual(LIMIT);
    release();
    await Promise.all(sends);
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(admitted);
    expect(await used(user)).toBeLessThanOrEqual(LIMIT + admitted * RESERVE);
    const [budget] = (await b.gql<any, any>(BUDGETS, {}, { user })).data.budgets;
    expect(budget.usedTokens).toBe(await used(user));
  });

  test('without budgets the list is empty and nothing is capped', async () => {
    const free = await startTestServer({ DATABASE_URL: scratch.url, OPENAI_API_KEY: 'k', OPENAI_BASE_URL: fake.baseURL, SUMMARIES: 'false' });
    try {
      const user = newUser();
      expect((await free.gql<any, any>(BUDGETS, {}, { user })).data.budgets).toEqual([]);
      await free.gql(SendMessageDocument, { input: { visionId: await visionOf(free, user), content: 'Привет' } }, { user });
      expect(chat()[0]!.body.max_tokens).toBeUndefined();
    } finally {
      await free.stop();
    }
  });

  test('a background job of a user over budget waits until the reset: it is queued again for then, under its key, and not failed', async () => {
    const jobs = new JobQueue({ connectionString: scratch.url, logger: pino({ level: 'silent' }), pollSeconds: 1, retryDelaySeconds: 60 });
    const runs: { at: number; retryCount: number }[] = [];
    const resetsAt = new Date(Date.now() + 2000);
    jobs.register<{ n: number }>('budget-test', async (_data, info) => {
      runs.push({ at: Date.now(), retryCount: info.retryCount });
      if (runs.length === 1) throw new QuotaExceededError({ period: 'DAY', limitTokens: 1, usedTokens: 1, remainingTokens: 0, resetsAt });
    });
    await jobs.start();
    try {
      await jobs.send('budget-test', { n: 1 }, 'user-key');
      await waitUntil('the deferred run', async () => runs.length === 2, 15_000, 100);
      expect(runs[1]!.at).toBeGreaterThanOrEqual(resetsAt.getTime());
      // a new job, not a retry of a failed one (a retry would wait retryDelaySeconds: 60 s)
      expect(runs[1]!.retryCount).toBe(0);
    } finally {
      await jobs.stop(1000);
    }
  }, 30_000);
});
