/**
 * Recall (issue 12): before each reply, older messages outside the window that bear on the new
 * user message join the model's request (after the summary, with their dates), within the token
 * budget; `Vision.context.recalled` shows them. The real server and PostgreSQL, the official SDK
 * against a fake model with deterministic embeddings.
 */
import { RECALL_HEADING } from '../src/memory/context';
import { CreateVisionDocument, RetryReplyDocument, SendMessageDocument } from './generated/graphql';
import { createScratchDatabase } from './support/db';
import { startFakeOpenAI, type FakeOpenAI, type RecordedRequest } from './support/fake-openai';
import { errorCode, newUser, startTestServer, type TestServer } from './support/server';
import { waitUntil } from './support/wait';

const CONTEXT = `query Ctx($id: ID!) { vision(id: $id) { context { budgetTokens totalTokens recalled { id content createdAt } window { id } } } }`;

let fake: FakeOpenAI;
let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let server: TestServer;

const RELEVANT = 'Мой пёс Барни очень боится грозы, прячется под кровать';
const IRRELEVANT = 'Купил новые кроссовки для бега';
const NEW_MESSAGE = 'Барни снова испугался грозы вечером';

beforeAll(async () => {
  fake = await startFakeOpenAI();
  scratch = await createScratchDatabase('vp_recall');
  server = await startTestServer({
    DATABASE_URL: scratch.url,
    OPENAI_API_KEY: 'test-key',
    OPENAI_BASE_URL: fake.baseURL,
    LLM_MAX_RETRIES: '0',
    LLM_TIMEOUT_MS: '3000',
    EMBEDDINGS: 'true',
    EMBEDDING_BATCH_SIZE: '500',
    SUMMARIES: 'false',
    MAX_MESSAGES: '4',
    CONTEXT_TOKEN_BUDGET: '4000',
    REPLY_TOKEN_RESERVE: '500',
    JOBS_POLL_SECONDS: '1',
    JOBS_RETRY_DELAY_SECONDS: '1',
  });
});

beforeEach(() => fake.reset());

afterAll(async () => {
  await server?.stop();
  await fake?.close();
  await scratch?.drop();
});

/** A vision whose first two messages are the relevant and the irrelevant one, then 200 turns of small talk, all embedded. */
async function longPath(user: string): Promise<{ visionId: string; relevantId: string; relevantAt: string; irrelevantId: string }> {
  const r = await server.gql(CreateVisionDocument, { input: { title: 'Спокойная собака' } }, { user });
  const visionId = r.data!.createVision.id;
  const texts = [RELEVANT, IRRELEVANT];
  for (let i = 0; i < 200; i++) texts.push(`Обсуждали план на день номер ${i}, работа и отдых`, `Хорошо, запишем шаг ${i} в дневник`);
  const rows = await server.sql<{ id: string; day: string }>(
    `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
     select gen_random_uuid(), ?, case when n % 2 = 1 then 'user' else 'assistant' end, 'text', c, 'complete',
            timestamptz '2026-03-01 09:00+00' + n * interval '1 hour'
     from json_array_elements_text(?::json) with ordinality as t(c, n) order by n
     returning id, to_char(createdat at time zone 'UTC', 'YYYY-MM-DD') as day`,
    [visionId, JSON.stringify(texts)],
  );
  while ((await server.server.search.embeddings.embedPending(visionId)) === 'more');
  return { visionId, relevantId: rows[0]!.id, relevantAt: rows[0]!.day, irrelevantId: rows[1]!.id };
}

const isChat = (r: RecordedRequest) => r.path.endsWith('/chat/completions');
const recalledOf = (r: RecordedRequest): string | undefined =>
  (r.body.messages as { role: string; content: string }[]).find((m) => m.role === 'system' && m.content.startsWith(RECALL_HEADING))?.content;

async function replyDone(visionId: string): Promise<void> {
  await waitUntil('the reply', async () => {
    const rows = await server.sql(`select 1 from vision_messages where visionid = ? and sender = 'assistant' and state <> 'streaming' and createdat > now() - interval '1 hour'`, [visionId]);
    return rows.length === 1;
  }, 10_000, 50);
}

describe('recall', () => {
  it('a relevant message from 200 turns ago reaches the model; an irrelevant one does not', async () => {
    const user = newUser('recall');
    const p = await longPath(user);
    const sent = await server.gql(SendMessageDocument, { input: { visionId: p.visionId, content: NEW_MESSAGE } }, { user });
    expect(sent.errors).toBeUndefined();
    await fake.waitForRequests(1);
    const request = fake.requests.find(isChat)!;
    const recalled = recalledOf(request);
    expect(recalled).toBeDefined();
    expect(recalled).toContain(`[${p.relevantAt}] Person: ${RELEVANT}`);
    expect(recalled).not.toContain(IRRELEVANT);
    expect(recalled).not.toContain('Обсуждали план');
    // after the system prompt, before the window; the window holds the newest messages only
    const messages = request.body.messages as { role: string; content: string }[];
    expect(messages.findIndex((m) => m.content === recalled)).toBe(1);
    expect(messages[messages.length - 1]).toEqual({ role: 'user', content: NEW_MESSAGE });
    expect(messages.length).toBe(2 + 4);
    // the new message was embedded for recall (metered), before the request
    // its row is settled beside the reply's work (not before the request), so wait for it
    const rows = await waitUntil('the recall embedding row settled', async () => {
      const r = await server.sql(`select meta from tokenscount where clientid = ? and meta->>'for' = 'recall' and state = 'settled'`, [user]);
      return r.length ? r : null;
    }, 5000, 50);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.meta).toMatchObject({ purpose: 'embedding', finish: 'complete', visionid: p.visionId });
    await replyDone(p.visionId);

    // the job embeds the reply after the turn: let it finish, so the count below is only the view's
    await waitUntil('the reply embedded by the job', async () => {
      const r = await server.sql(
        `select 1 from vision_messages m join vision_message_embeddings e on e.messageid = m.id
         where m.visionid = ? and m.sender = 'assistant' and m.createdat > now() - interval '1 hour'`,
        [p.visionId],
      );
      return r.length === 1;
    }, 10_000, 50);
    // Vision.context shows the same, and asks the model nothing
    const calls = fake.embeddingRequests.length + fake.requests.length;
    const ctx = await server.gql(CONTEXT, { id: p.visionId }, { user });
    expect(ctx.errors).toBeUndefined();
    const c = (ctx.data as any).vision.context;
    expect(c.recalled.map((m: { id: string }) => m.id)).toEqual([p.relevantId]);
    expect(c.recalled[0].content).toBe(RELEVANT);
    expect(c.window).toHaveLength(4);
    expect(c.totalTokens).toBeLessThanOrEqual(c.budgetTokens - 500);
    expect(fake.embeddingRequests.length + fake.requests.length).toBe(calls);
  });

  it('nothing is recalled from inside the window, or when nothing is similar enough', async () => {
    const user = newUser('none');
    const p = await longPath(user);
    await server.gql(SendMessageDocument, { input: { visionId: p.visionId, content: 'Какая погода будет в субботу?' } }, { user });
    await fake.waitForRequests(1);
    expect(recalledOf(fake.requests.find(isChat)!)).toBeUndefined();
    await replyDone(p.visionId);

    // a short dialog: everything is in the window, so there is nothing to recall
    const short = await server.gql(CreateVisionDocument, { input: { title: 'Коротко' } }, { user });
    const v = short.data!.createVision.id;
    fake.reset();
    await server.gql(SendMessageDocument, { input: { visionId: v, content: NEW_MESSAGE } }, { user });
    await fake.waitForRequests(1);
    expect(recalledOf(fake.requests.find(isChat)!)).toBeUndefined();
    await replyDone(v);
  });

  it('a reply cut mid-stream and retried recalls again from the stored embedding, with no second embeddings call', async () => {
    const user = newUser('retry');
    const p = await longPath(user);
    fake.enqueue({ kind: 'cut', chunks: ['Half an ', 'answer'] });
    const sent = await server.gql(SendMessageDocument, { input: { visionId: p.visionId, content: NEW_MESSAGE } }, { user });
    // the message is kept; the failed reply is reported as such
    expect(errorCode(sent)).toBe('LLM_FAILED');
    await replyDone(p.visionId);
    const [failed] = await server.sql<{ state: string }>(`select state from vision_messages where visionid = ? and sender = 'assistant' order by createdat desc limit 1`, [p.visionId]);
    expect(failed!.state).toBe('failed');
    expect(recalledOf(fake.requests.find(isChat)!)).toContain(RELEVANT);
    // the user message's vector was stored (in the background) when the first reply started
    await waitUntil('the new message embedded', async () => {
      const r = await server.sql(`select 1 from vision_message_embeddings e join vision_messages m on m.id = e.messageid where m.visionid = ? and m.content = ?`, [p.visionId, NEW_MESSAGE]);
      return r.length === 1;
    }, 5000, 50);
    const recallCalls = () => server.sql(`select 1 from tokenscount where clientid = ? and meta->>'for' = 'recall'`, [user]);
    expect(await recallCalls()).toHaveLength(1);

    fake.reset();
    const retried = await server.gql(RetryReplyDocument, { visionId: p.visionId }, { user });
    expect(retried.errors).toBeUndefined();
    await fake.waitForRequests(1);
    const recalled = recalledOf(fake.requests.find(isChat)!);
    expect(recalled).toContain(`[${p.relevantAt}] Person: ${RELEVANT}`);
    expect(recalled).not.toContain(IRRELEVANT);
    await waitUntil('the retried reply', async () => {
      const r = await server.sql<{ state: string }>(`select state from vision_messages where visionid = ? and sender = 'assistant' order by createdat desc limit 1`, [p.visionId]);
      return r[0]?.state === 'complete';
    }, 10_000, 50);
    expect(await recallCalls()).toHaveLength(1);
    expect(fake.embeddingRequests.filter((r) => JSON.stringify(r.body).includes('испугался'))).toHaveLength(0);
  });

  it('with the embeddings endpoint down the reply goes on without recall, and the failed call is metered', async () => {
    const user = newUser('down');
    const p = await longPath(user);
    fake.embeddingBehaviour = { kind: 'status', status: 500 };
    const sent = await server.gql(SendMessageDocument, { input: { visionId: p.visionId, content: NEW_MESSAGE } }, { user });
    expect(sent.errors).toBeUndefined();
    await fake.waitForRequests(1);
    expect(recalledOf(fake.requests.find(isChat)!)).toBeUndefined();
    await replyDone(p.visionId);
    const reply = await server.sql<{ state: string }>(`select state from vision_messages where visionid = ? and sender = 'assistant' order by createdat desc limit 1`, [p.visionId]);
    expect(reply[0]!.state).toBe('complete');
    const failed = await waitUntil('the failed recall embedding row settled', async () => {
      const r = await server.sql(`select meta from tokenscount where clientid = ? and meta->>'for' = 'recall' and state = 'settled'`, [user]);
      return r.length ? r : null;
    }, 5000, 50);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.meta).toMatchObject({ finish: 'failed', reason: 'upstream_error', status: 500 });
    fake.embeddingBehaviour = undefined;
  });
});
