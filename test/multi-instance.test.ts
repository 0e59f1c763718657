import { ReplyDeltasDocument, MessageAddedDocument, CreateVisionDocument, SendMessageDocument, StopReplyDocument, type ReplyDeltasSubscription } from './generated/graphql';
import { testDatabaseUrl } from './support/db';
import { chunk, startFakeOpenAI, type FakeOpenAI } from './support/fake-openai';
import { spawnServer, type ServerProcess } from './support/process';
import { redisAvailable, TEST_REDIS_URL } from './support/redis';
import { errorCode, newUser, postGraphQL } from './support/server';
import { collect, wsClient } from './support/ws';
import { print } from 'graphql';
import { Client } from 'pg';

/**
 * Two server processes on different ports sharing one PostgreSQL and one Redis.
 * Redis is required in CI (CI=true); on a machine without one these cases cannot run.
 */
const requireRedis = process.env.CI === 'true' || process.env.VP_TEST_REQUIRE_REDIS === 'true';

let fake: FakeOpenAI;
let a: ServerProcess;
let b: ServerProcess;
let pg: Client;
let hasRedis = false;

beforeAll(async () => {
  hasRedis = await redisAvailable();
  if (!hasRedis) {
    if (requireRedis) throw new Error(`Redis does not answer at ${TEST_REDIS_URL}; CI must provide it`);
    console.warn(`*** Redis does not answer at ${TEST_REDIS_URL}: the multi-instance tests did NOT run ***`);
    return;
  }
  fake = await startFakeOpenAI();
  const env = {
    DATABASE_URL: testDatabaseUrl(),
    REDIS_URL: TEST_REDIS_URL,
    OPENAI_API_KEY: 'test-key',
    OPENAI_BASE_URL: fake.baseURL,
    LLM_MAX_RETRIES: '0',
    LLM_TIMEOUT_MS: '20000',
    REPLY_FLUSH_MS: '100',
    REPLY_STALE_MS: '5000',
  };
  [a, b] = await Promise.all([spawnServer(env), spawnServer(env)]);
  pg = new Client({ connectionString: testDatabaseUrl() });
  await pg.connect();
});

afterAll(async () => {
  await Promise.all([a?.kill(), b?.kill()]);
  await fake?.close();
  await pg?.end();
});

beforeEach(() => fake?.reset());

const gql = <T, V>(srv: ServerProcess, doc: Parameters<typeof print>[0], variables: V, user: string) =>
  postGraphQL<T>(`${srv.url}/graphql`, print(doc), variables, { user });

async function newVision(srv: ServerProcess, user: string): Promise<string> {
  const r = await gql<{ createVision: { id: string } }, unknown>(srv, CreateVisionDocument, {}, user);
  return r.data!.createVision.id;
}

async function row(id: string) {
  return (await pg.query(`select state, content from vision_messages where id = $1`, [id])).rows[0] as { state: string; content: string };
}

function released(): { promise: Promise<void>; release: () => void } {
  let release!: () => void;
  return { promise: new Promise<void>((r) => (release = r)), release };
}

const describeRedis = (name: string, fn: () => void) =>
  describe(name, () => {
    beforeEach(() => {
      if (!hasRedis) expect(requireRedis).toBe(false);
    });
    fn();
  });

describeRedis('across two instances', () => {
  it('subscribe on one instance, send on the other: messageAdded and every replyDelta arrive', async () => {
    if (!hasRedis) return;
    const user = newUser();
    const visionId = await newVision(a, user);
    const ws = wsClient(a.url, { user });
    const added = collect(ws, MessageAddedDocument, { visionId });
    const deltas = collect(ws, ReplyDeltasDocument, { visionId });
    await new Promise((r) => setTimeout(r, 300)); // subscriptions reach Redis
    const text = 'Один шаг за раз приводит к цели, даже если путь долгий.';
    fake.enqueue({ kind: 'stream', chunks: chunk(text, 4), chunkDelayMs: 5 });
    const sent = await gql<any, unknown>(b, SendMessageDocument, { input: { visionId, content: 'Как начать?' } }, user);
    expect(sent.errors).toBeUndefined();
    const reply = sent.data.sendMessage.assistantMessage;
    expect(reply.content).toBe(text);
    const got = await added.waitFor(2);
    expect(got.map((e) => [e.messageAdded.sender, e.messageAdded.state])).toEqual([
      ['USER', 'COMPLETE'],
      ['ASSISTANT', 'COMPLETE'],
    ]);
    const n = chunk(text, 4).length;
    const ds = (await deltas.waitFor(n + 1)).map((e) => e.replyDelta);
    expect(ds.map((d) => d.seq)).toEqual(Array.from({ length: n + 1 }, (_, i) => i + 1));
    expect(ds.map((d) => d.delta).join('')).toBe(text);
    expect(ds[n]).toMatchObject({ done: true, state: 'COMPLETE', replyId: reply.id });
    expect(ds.slice(0, n).every((d) => !d.done && d.state === 'STREAMING')).toBe(true);
    added.stop();
    deltas.stop();
    await ws.dispose();
  });

  it('stopReply sent to the instance that is not generating stops it: STOPPED, partial text, tokens logged, done published', async () => {
    if (!hasRedis) return;
    const user = newUser();
    const visionId = await newVision(a, user);
    const ws = wsClient(a.url, { user });
    const deltas = collect(ws, ReplyDeltasDocument, { visionId });
    await new Promise((r) => setTimeout(r, 300));
    const hold = released();
    fake.enqueue({ kind: 'stream', chunks: ['Первый кусок. ', 'второй', ' третий'], usage: null, hold: hold.promise });
    const sending = gql<any, unknown>(b, SendMessageDocument, { input: { visionId, content: 'Стоп-тест' } }, user);
    await deltas.waitFor(1);
    const stop = await gql<any, unknown>(a, StopReplyDocument, { visionId }, user);
    if (stop.data?.stopReply !== true) {
      // seen once (2026-12-03) and not reproduced: what both servers said, and the reply's row
      const rows = await pg.query('select sender, state, content, heartbeatat from vision_messages where visionid = $1 order by createdat', [visionId]);
      console.error('stopReply did not stop', JSON.stringify(stop), JSON.stringify(rows.rows), '\nA:', a.output.slice(-30).join('\n'), '\nB:', b.output.slice(-30).join('\n'));
    }
    expect(stop.data).toEqual({ stopReply: true });
    const sent = await sending;
    hold.release();
    const reply = sent.data.sendMessage.assistantMessage;
    expect(reply.state).toBe('STOPPED');
    expect(reply.content).toBe('Первый кусок. ');
    expect(await row(reply.id)).toEqual({ state: 'stopped', content: 'Первый кусок. ' });
    const tokens = (await pg.query(`select meta, completiontokens from tokenscount where meta->>'messageid' = $1`, [reply.id])).rows;
    expect(tokens).toHaveLength(1);
    expect(tokens[0].meta).toMatchObject({ finish: 'stopped', estimated: true, visionid: visionId });
    expect(tokens[0].completiontokens).toBeGreaterThan(0);
    const all = (await deltas.waitFor(2)).map((e) => e.replyDelta);
    expect(all[all.length - 1]).toMatchObject({ done: true, state: 'STOPPED' });
    expect((await gql<any, unknown>(a, StopReplyDocument, { visionId }, user)).data).toEqual({ stopReply: false });
    deltas.stop();
    await ws.dispose();
  });

  it('a client that drops its WebSocket mid-reply and resubscribes with afterSeq (on the other instance) misses nothing and gets nothing twice', async () => {
    if (!hasRedis) return;
    const user = newUser();
    const visionId = await newVision(a, user);
    const text = Array.from({ length: 40 }, (_, i) => `слово${i} `).join('');
    const parts = chunk(text, 6);
    const first = wsClient(a.url, { user });
    const before = collect(first, ReplyDeltasDocument, { visionId });
    await new Promise((r) => setTimeout(r, 300));
    fake.enqueue({ kind: 'stream', chunks: parts, chunkDelayMs: 15 });
    const sending = gql<any, unknown>(b, SendMessageDocument, { input: { visionId, content: 'Длинный ответ, пожалуйста' } }, user);
    await before.waitFor(5);
    await first.dispose(); // the connection drops
    const gotBefore = before.events.map((e) => e.replyDelta);
    const afterSeq = gotBefore[gotBefore.length - 1]!.seq;
    const second = wsClient(b.url, { user });
    const after = collect(second, ReplyDeltasDocument, { visionId, afterSeq });
    const sent = await sending;
    const reply = sent.data.sendMessage.assistantMessage;
    const doneAt = async () => {
      for (let i = 0; i < 200; i++) {
        if (after.events.some((e) => e.replyDelta.done)) return;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`no done event: ${JSON.stringify(after.events.map((e) => e.replyDelta.seq))} ${JSON.stringify(after.errors)}`);
    };
    await doneAt();
    const resumed: ReplyDeltasSubscription['replyDelta'][] = after.events.map((e) => e.replyDelta);
    const seqs = [...gotBefore, ...resumed].map((d) => d.seq);
    expect(seqs).toEqual(Array.from({ length: parts.length + 1 }, (_, i) => i + 1));
    expect([...gotBefore, ...resumed].map((d) => d.delta).join('')).toBe(reply.content);
    expect(reply.content).toBe(text);
    after.stop();
    await second.dispose();
  });

  it('refuses unauthenticated and foreign-vision subscriptions', async () => {
    if (!hasRedis) return;
    const owner = newUser();
    const visionId = await newVision(b, owner);
    const anon = wsClient(a.url, {});
    const closed = new Promise<number>((r) => anon.on('closed', (e) => r((e as { code: number }).code)));
    const s1 = collect(anon, MessageAddedDocument, { visionId });
    expect(await closed).toBe(4401);
    await s1.ended;
    await anon.dispose();
    const other = wsClient(a.url, { user: newUser() });
    for (const sub of [collect(other, MessageAddedDocument, { visionId }), collect(other, ReplyDeltasDocument, { visionId, afterSeq: 0 })]) {
      await sub.ended;
      expect(sub.events).toEqual([]);
      expect(JSON.stringify(sub.errors)).toContain('NOT_FOUND');
    }
    await other.dispose();
    expect(errorCode(await gql(a, StopReplyDocument, { visionId }, newUser()))).toBe('NOT_FOUND');
  });
});

describe('graceful shutdown', () => {
  it('SIGTERM during a reply: running replies end STOPPED after SHUTDOWN_GRACE_MS, WebSockets close 1001, exit 0', async () => {
    const own = await startFakeOpenAI();
    const srv = await spawnServer({
      DATABASE_URL: testDatabaseUrl(),
      OPENAI_API_KEY: 'test-key',
      OPENAI_BASE_URL: own.baseURL,
      LLM_MAX_RETRIES: '0',
      SHUTDOWN_GRACE_MS: '300',
      REPLY_FLUSH_MS: '100',
    });
    const client = new Client({ connectionString: testDatabaseUrl() });
    await client.connect();
    try {
      const user = newUser();
      const visionId = await newVision(srv, user);
      const ws = wsClient(srv.url, { user });
      const wsClosed = new Promise<number>((r) => ws.on('closed', (e) => r((e as { code: number }).code)));
      const added = collect(ws, MessageAddedDocument, { visionId });
      await new Promise((r) => setTimeout(r, 200));
      const hold = released();
      own.enqueue({ kind: 'stream', chunks: ['Половина ', 'ответа'], hold: hold.promise });
      const sending = gql<any, unknown>(srv, SendMessageDocument, { input: { visionId, content: 'Перед остановкой' } }, user);
      await own.waitForRequests(1);
      await added.waitFor(1);
      const code = await srv.kill('SIGTERM');
      hold.release();
      expect(code).toBe(0);
      expect(await wsClosed).toBe(1001);
      const sent = await sending;
      expect(sent.data.sendMessage.assistantMessage).toMatchObject({ state: 'STOPPED', content: 'Половина ' });
      const rows = (await client.query(`select sender, state, content from vision_messages where visionid = $1 order by createdat, id`, [visionId])).rows;
      expect(rows).toEqual([
        { sender: 'user', state: 'complete', content: 'Перед остановкой' },
        { sender: 'assistant', state: 'stopped', content: 'Половина ' },
      ]);
      const log = srv.output.join('\n');
      expect(log).toContain('shutdown: replies finished or stopped');
      expect(log).toContain('"msg":"stopped"');
      await ws.dispose();
    } finally {
      await srv.kill('SIGKILL');
      await own.close();
      await client.end();
    }
  });
});
