/**
 * The dialog step end to end: the real server over real HTTP and WebSocket, a real PostgreSQL,
 * and a fake OpenAI-compatible server that the official SDK talks to.
 *
 * Every test uses fresh users and visions and filters every SQL query by vision id or user id:
 * other test files share the database and may run at the same time.
 */
import { randomUUID } from 'node:crypto';
import { parse, print } from 'graphql';
import { Client as PgClient } from 'pg';
import type { Client as WsClient } from 'graphql-ws';
import { DEFAULT_SYSTEM_PROMPT } from '../src/config';
import { createScratchDatabase, testDatabaseUrl } from './support/db';
import { startFakeOpenAI, type Behaviour, type FakeOpenAI } from './support/fake-openai';
import { newUser, startTestServer, type GqlResult, type TestServer } from './support/server';
import { collect, wsClient } from './support/ws';
import {
  CreateVisionDocument,
  GetVisionDocument,
  MessageAddedDocument,
  MyTokenUsageDocument,
  ReplyDeltasDocument,
  RetryReplyDocument,
  SendMessageDocument,
  SetVisionStatusDocument,
  StopReplyDocument,
  VisionOverviewDocument,
  type SendMessageMutation,
} from './generated/graphql';

const DEFAULT_REPLY = 'Hello from the coach.'; // the fake's initial default behaviour

let fake: FakeOpenAI;
let server: TestServer;
let serverEnv: Record<string, string>;
const wsClients: WsClient[] = [];
const holds: Deferred[] = [];

beforeAll(async () => {
  fake = await startFakeOpenAI();
  serverEnv = {
    OPENAI_API_KEY: 'test-key',
    OPENAI_BASE_URL: fake.baseURL,
    LLM_MAX_RETRIES: '0',
    LLM_TIMEOUT_MS: '1500',
    REPLY_FLUSH_MS: '100',
    REPLY_STALE_MS: '3000',
    // these tests count the model's requests; summaries (background model calls) have test/memory.test.ts
    SUMMARIES: 'false',
  };
  server = await startTestServer(serverEnv);
});

beforeEach(() => {
  fake.reset();
});

afterEach(async () => {
  // never leave a held fake reply behind a failed test
  for (const h of holds.splice(0)) h.resolve();
  for (const c of wsClients.splice(0)) await c.dispose();
});

afterAll(async () => {
  for (const h of holds.splice(0)) h.resolve();
  for (const c of wsClients.splice(0)) await c.dispose();
  await server?.stop();
  await fake?.close();
});

// ------------------------------------------------------------------ helpers

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
}

/** A promise released by the test; always released in afterEach. */
function hold(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  const d = { promise, resolve };
  holds.push(d);
  return d;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns a truthy value; fails with `what` after `timeoutMs`. */
async function waitUntil<T>(what: string, check: () => Promise<T | undefined | null | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const v = await check();
    if (v) return v;
    last = v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await sleep(50);
  }
}

/** Resolves once `n` of the promises have settled (either way). */
function settled(ps: Promise<unknown>[], n: number): Promise<void> {
  let count = 0;
  return new Promise<void>((resolve) => {
    const one = () => {
      count++;
      if (count >= n) resolve();
    };
    for (const p of ps) p.then(one, one);
  });
}

async function createVision(user: string, title = 'Run a marathon', s: TestServer = server): Promise<string> {
  const r = await s.gql(CreateVisionDocument, { input: { title } }, { user });
  expect(r.errors).toBeUndefined();
  return r.data!.createVision.id;
}

function send(user: string, visionId: string, content: string, clientMessageId?: string, s: TestServer = server) {
  return s.gql(
    SendMessageDocument,
    { input: { visionId, content, ...(clientMessageId !== undefined ? { clientMessageId } : {}) } },
    { user },
  );
}

function retry(user: string, visionId: string) {
  return server.gql(RetryReplyDocument, { visionId }, { user });
}

function stop(user: string, visionId: string) {
  return server.gql(StopReplyDocument, { visionId }, { user });
}

function setStatus(user: string, id: string, status: 'ACTIVE' | 'FROZEN' | 'DELETED') {
  return server.gql(SetVisionStatusDocument, { id, status }, { user });
}

/** The single error of a response: its code and extensions; data must be null. */
function onlyError(r: GqlResult<unknown>): { code: string; message: string; ext: Record<string, any> } {
  expect(r.errors).toHaveLength(1);
  expect(r.data ?? null).toBeNull();
  const e = r.errors![0]!;
  return { code: String(e.extensions?.code), message: e.message, ext: e.extensions ?? {} };
}

function ok<T>(r: GqlResult<T>): T {
  expect(r.errors).toBeUndefined();
  expect(r.data).toBeTruthy();
  return r.data!;
}

type Row = Record<string, any>;

function messageRows(visionId: string, s: TestServer = server): Promise<Row[]> {
  return s.sql(`select * from vision_messages where visionid = ? order by createdat, id`, [visionId]);
}

async function updatedAtOf(visionId: string): Promise<string> {
  const [row] = await server.sql(`select updatedat::text as u from visions where id = ?`, [visionId]);
  return row!.u as string;
}

function tokenRows(visionId: string, s: TestServer = server): Promise<Row[]> {
  return s.sql(`select * from tokenscount where meta ->> 'visionid' = ? order by id`, [visionId]);
}

async function messageRow(id: string): Promise<Row | undefined> {
  const [row] = await server.sql(`select * from vision_messages where id = ?`, [id]);
  return row;
}

/** Waits until the STREAMING reply of the vision has stored exactly `text` (the first chunk is out). */
function waitForStoredPartial(visionId: string, text: string): Promise<Row> {
  return waitUntil(`the reply of ${visionId} to hold "${text}"`, async () => {
    const [row] = await server.sql(`select * from vision_messages where visionid = ? and sender = 'assistant' and state = 'streaming'`, [visionId]);
    return row && row.content === text ? row : undefined;
  });
}

type Pair = SendMessageMutation['sendMessage'];

// ------------------------------------------------------------------ the happy path

describe('sendMessage: happy path', () => {
  test('returns the stored pair, writes one tokenscount row with the provider usage, bumps the vision', async () => {
    const user = newUser('happy');
    const title = 'Run a marathon in 2027';
    const visionId = await createVision(user, title);
    const before = ok(await server.gql(GetVisionDocument, { id: visionId }, { user })).vision!;
    const usage = { prompt_tokens: 123, completion_tokens: 45, total_tokens: 168 };
    fake.enqueue({ kind: 'stream', chunks: ['Great', ' goal', '! What', ' is your', ' first step?'], usage });

    const pair: Pair = ok(await send(user, visionId, '   I want to run a marathon  \n')).sendMessage;

    expect(pair.userMessage).toMatchObject({
      visionId,
      sender: 'USER',
      type: 'TEXT',
      content: 'I want to run a marathon',
      state: 'COMPLETE',
      file: null,
    });
    expect(pair.assistantMessage).toMatchObject({
      visionId,
      sender: 'ASSISTANT',
      type: 'TEXT',
      content: 'Great goal! What is your first step?',
      state: 'COMPLETE',
      file: null,
    });
    expect(pair.assistantMessage.id).not.toBe(pair.userMessage.id);

    // both rows, as returned
    const rows = await messageRows(visionId);
    expect(rows.map((r) => ({ id: r.id, sender: r.sender, messagetype: r.messagetype, content: r.content, state: r.state }))).toEqual([
      { id: pair.userMessage.id, sender: 'user', messagetype: 'text', content: 'I want to run a marathon', state: 'complete' },
      { id: pair.assistantMessage.id, sender: 'assistant', messagetype: 'text', content: 'Great goal! What is your first step?', state: 'complete' },
    ]);
    expect(rows[1]!.replyto).toBe(pair.userMessage.id);
    expect(rows[1]!.heartbeatat).toBeNull();

    // the request the model got
    expect(fake.requests).toHaveLength(1);
    const req = fake.requests[0]!;
    expect(req.path).toBe('/v1/chat/completions');
    expect(req.headers.authorization).toBe('Bearer test-key');
    expect(req.body.model).toBe('gpt-4.1');
    expect(req.body.messages).toEqual([
      { role: 'system', content: DEFAULT_SYSTEM_PROMPT.split('{title}').join(title) },
      { role: 'user', content: 'I want to run a marathon' },
    ]);

    // exactly one tokenscount row with the provider's numbers
    const tokens = await tokenRows(visionId);
    expect(tokens).toHaveLength(1);
    const t = tokens[0]!;
    expect(t).toMatchObject({
      clientid: user,
      clienttype: 'user',
      provider: 'openai',
      model: 'gpt-4.1',
      prompttokens: 123,
      completiontokens: 45,
      totaltokens: 168,
    });
    expect(t.rawusage).toEqual(usage);
    expect(t.meta).toMatchObject({ module: 'vision', visionid: visionId, messageid: pair.assistantMessage.id, finish: 'complete' });
    expect(t.meta.estimated).toBeUndefined();
    expect(t.meta.reason).toBeUndefined();
    // nothing else was counted for this user
    const byUser = await server.sql(`select count(*)::int as n from tokenscount where clientid = ?`, [user]);
    expect(byUser[0]!.n).toBe(1);

    // the API reports it
    const overview = ok(await server.gql(VisionOverviewDocument, { id: visionId }, { user })).vision!;
    expect(overview.tokenUsage).toEqual({ calls: 1, promptTokens: 123, completionTokens: 45, totalTokens: 168 });
    expect(overview.lastMessage?.id).toBe(pair.assistantMessage.id);
    const mine = ok(await server.gql(MyTokenUsageDocument, {}, { user })).tokenUsage;
    expect(mine).toEqual({ calls: 1, promptTokens: 123, completionTokens: 45, totalTokens: 168 });

    // updatedAt was bumped by the new messages
    const after = ok(await server.gql(GetVisionDocument, { id: visionId }, { user })).vision!;
    expect(new Date(after.updatedAt).getTime()).toBeGreaterThan(new Date(before.updatedAt).getTime());
    expect(new Date(after.updatedAt).getTime()).toBeGreaterThanOrEqual(new Date(pair.assistantMessage.createdAt).getTime());
  });

  test('usage omitted by the provider: the row is estimated, counts > 0, total = prompt + completion, rawusage null', async () => {
    const user = newUser('nousage');
    const visionId = await createVision(user);
    fake.enqueue({ kind: 'stream', chunks: ['You can', ' start', ' with a', ' short', ' run today.'], usage: null });

    const pair = ok(await send(user, visionId, 'Where do I start?')).sendMessage;
    expect(pair.assistantMessage.state).toBe('COMPLETE');
    expect(pair.assistantMessage.content).toBe('You can start with a short run today.');

    const tokens = await tokenRows(visionId);
    expect(tokens).toHaveLength(1);
    const t = tokens[0]!;
    expect(t.meta).toMatchObject({ module: 'vision', visionid: visionId, messageid: pair.assistantMessage.id, finish: 'complete', estimated: true });
    expect(t.rawusage).toBeNull();
    expect(t.prompttokens).toBeGreaterThan(0);
    expect(t.completiontokens).toBeGreaterThan(0);
    expect(t.totaltokens).toBe(t.prompttokens + t.completiontokens);

    const overview = ok(await server.gql(VisionOverviewDocument, { id: visionId }, { user })).vision!;
    expect(overview.tokenUsage).toEqual({
      calls: 1,
      promptTokens: t.prompttokens,
      completionTokens: t.completiontokens,
      totalTokens: t.totaltokens,
    });
  });
});

// ------------------------------------------------------------------ history window

describe('history window', () => {
  test('the model gets the system prompt with the title, then the last 50 eligible messages in order', async () => {
    const user = newUser('history');
    const title = 'Open a bakery';
    const visionId = await createVision(user, title);

    // 120 alternating user/assistant messages one second apart, an hour ago, plus messages the window must skip
    const base = Date.now() - 3_600_000;
    type Seed = { sender: string; type: string; content: string; state: string; at: number };
    const seeds: Seed[] = [];
    for (let i = 0; i < 120; i++) {
      seeds.push({ sender: i % 2 === 0 ? 'user' : 'assistant', type: 'text', content: `seed message ${i}`, state: 'complete', at: base + i * 1000 });
    }
    const excluded: Seed[] = [
      { sender: 'system', type: 'text', content: 'system note', state: 'complete', at: base + 100_500 },
      { sender: 'user', type: 'info', content: 'info note', state: 'complete', at: base + 104_500 },
      { sender: 'assistant', type: 'text', content: 'failed partial reply', state: 'failed', at: base + 108_500 },
      { sender: 'user', type: 'text', content: '', state: 'complete', at: base + 112_500 },
      { sender: 'system', type: 'text', content: 'late system note', state: 'complete', at: base + 118_500 },
    ];
    const all = [...seeds, ...excluded];
    const values: string[] = [];
    const params: unknown[] = [];
    for (const s of all) {
      values.push(`(?::uuid, ?::uuid, ?, ?, ?, ?, ?::timestamptz)`);
      params.push(randomUUID(), visionId, s.sender, s.type, s.content, s.state, new Date(s.at).toISOString());
    }
    await server.sql(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat) values ${values.join(', ')}`,
      params,
    );
    expect(await messageRows(visionId)).toHaveLength(125);

    fake.enqueue({ kind: 'stream', chunks: ['Noted.'] });
    const pair = ok(await send(user, visionId, 'What next?')).sendMessage;
    expect(pair.assistantMessage.content).toBe('Noted.');

    expect(fake.requests).toHaveLength(1);
    const body = fake.requests[0]!.body;
    expect(body.stream).toBe(true);
    expect(body.stream_options?.include_usage).toBe(true);
    const messages = body.messages as { role: string; content: string }[];
    expect(messages[0]!.role).toBe('system');
    expect(messages[0]!.content).toContain(title);
    expect(messages[0]!.content).toBe(DEFAULT_SYSTEM_PROMPT.split('{title}').join(title));

    const expected = [
      ...seeds.slice(71).map((s) => ({ role: s.sender, content: s.content })),
      { role: 'user', content: 'What next?' },
    ];
    expect(expected).toHaveLength(50);
    expect(messages.slice(1)).toEqual(expected);
    expect(messages).toHaveLength(51);
  });
});

// ------------------------------------------------------------------ failures

describe('model failures', () => {
  const cases: { name: string; behaviour: Behaviour; reason: string; partial: string }[] = [
    { name: '429', behaviour: { kind: 'status', status: 429 }, reason: 'rate_limited', partial: '' },
    { name: '500', behaviour: { kind: 'status', status: 500 }, reason: 'upstream_error', partial: '' },
    { name: 'connection cut after 2 chunks', behaviour: { kind: 'cut', chunks: ['First part', ' and second'] }, reason: 'upstream_error', partial: 'First part and second' },
    { name: 'malformed event', behaviour: { kind: 'malformed', chunks: ['Half a'] }, reason: 'bad_response', partial: 'Half a' },
    { name: 'hanging upstream', behaviour: { kind: 'hang' }, reason: 'timeout', partial: '' },
  ];

  test.each(cases)('$name → LLM_FAILED ($reason); message kept, reply FAILED, retryReply then succeeds', async ({ behaviour, reason, partial }) => {
    const user = newUser('fail');
    const visionId = await createVision(user);
    fake.enqueue(behaviour);

    const r = await send(user, visionId, '  Help me plan  ');
    const err = onlyError(r);
    expect(err.code).toBe('LLM_FAILED');
    expect(err.ext.reason).toBe(reason);
    const userMessageId = err.ext.userMessageId as string;
    const replyId = err.ext.replyId as string;
    expect(typeof userMessageId).toBe('string');
    expect(typeof replyId).toBe('string');
    expect(fake.requests).toHaveLength(1);

    const rows = await messageRows(visionId);
    expect(rows).toHaveLength(2);
    const userRow = rows.find((x) => x.id === userMessageId)!;
    expect(userRow).toMatchObject({ sender: 'user', state: 'complete', content: 'Help me plan' });
    const replyRow = rows.find((x) => x.id === replyId)!;
    expect(replyRow).toMatchObject({ sender: 'assistant', state: 'failed', content: partial, replyto: userMessageId });
    expect(replyRow.payload?.error?.reason).toBe(reason);
    expect(replyRow.heartbeatat).toBeNull();

    const tokens = await tokenRows(visionId);
    expect(tokens).toHaveLength(1);
    expect(tokens[0]!.meta).toMatchObject({ module: 'vision', visionid: visionId, messageid: replyId, finish: 'failed', reason });
    expect(tokens[0]!.clientid).toBe(user);

    // the vision stays usable: retryReply answers the same user message with a new reply
    const again = ok(await retry(user, visionId)).retryReply;
    expect(again.userMessage.id).toBe(userMessageId);
    expect(again.userMessage.content).toBe('Help me plan');
    expect(again.assistantMessage.id).not.toBe(replyId);
    expect(again.assistantMessage).toMatchObject({ sender: 'ASSISTANT', state: 'COMPLETE', content: DEFAULT_REPLY });
    expect(fake.requests).toHaveLength(2);
    // the failed reply is not part of the history sent again
    expect(fake.requests[1]!.body.messages.slice(1)).toEqual([{ role: 'user', content: 'Help me plan' }]);

    const rowsAfter = await messageRows(visionId);
    expect(rowsAfter).toHaveLength(3);
    expect(rowsAfter.find((x) => x.id === again.assistantMessage.id)).toMatchObject({ state: 'complete', content: DEFAULT_REPLY, replyto: userMessageId });
    expect(rowsAfter.find((x) => x.id === replyId)!.state).toBe('failed');
    const tokensAfter = await tokenRows(visionId);
    expect(tokensAfter.map((t) => t.meta.finish)).toEqual(['failed', 'complete']);
  });
});

// ------------------------------------------------------------------ retryReply

describe('retryReply', () => {
  test('NOTHING_TO_RETRY when the last user message already has a COMPLETE reply', async () => {
    const user = newUser('retry');
    const visionId = await createVision(user);
    ok(await send(user, visionId, 'Hello'));
    expect(fake.requests).toHaveLength(1);

    const err = onlyError(await retry(user, visionId));
    expect(err.code).toBe('NOTHING_TO_RETRY');
    expect(fake.requests).toHaveLength(1);
    expect(await messageRows(visionId)).toHaveLength(2);
    expect(await tokenRows(visionId)).toHaveLength(1);
  });

  test('NOTHING_TO_RETRY on a vision without messages', async () => {
    const user = newUser('retry-empty');
    const visionId = await createVision(user);
    const err = onlyError(await retry(user, visionId));
    expect(err.code).toBe('NOTHING_TO_RETRY');
    expect(fake.requests).toHaveLength(0);
    expect(await messageRows(visionId)).toHaveLength(0);
  });
});

// ------------------------------------------------------------------ idempotency and the busy rule

describe('idempotency', () => {
  test('the same clientMessageId twice returns the first result and calls the model once', async () => {
    const user = newUser('idem');
    const visionId = await createVision(user);
    const first = ok(await send(user, visionId, 'Plan my week', 'key-1')).sendMessage;
    const second = ok(await send(user, visionId, 'Plan my week', 'key-1')).sendMessage;
    expect(second.userMessage.id).toBe(first.userMessage.id);
    expect(second.assistantMessage.id).toBe(first.assistantMessage.id);
    expect(second.assistantMessage.content).toBe(DEFAULT_REPLY);
    expect(second.assistantMessage.state).toBe('COMPLETE');
    // a repeat with other content still returns the first result
    const third = ok(await send(user, visionId, 'Something else', 'key-1')).sendMessage;
    expect(third.userMessage.id).toBe(first.userMessage.id);
    expect(third.userMessage.content).toBe('Plan my week');
    expect(third.assistantMessage.id).toBe(first.assistantMessage.id);

    expect(fake.requests).toHaveLength(1);
    expect(await messageRows(visionId)).toHaveLength(2);
    expect(await tokenRows(visionId)).toHaveLength(1);
  });

  test('two concurrent sends with the same new key share one turn', async () => {
    const user = newUser('idem-conc');
    const visionId = await createVision(user);
    fake.enqueue({ kind: 'stream', chunks: ['One', ' answer'], firstByteDelayMs: 300 });
    const [a, b] = await Promise.all([send(user, visionId, 'Same message', 'key-conc'), send(user, visionId, 'Same message', 'key-conc')]);
    const pa = ok(a).sendMessage;
    const pb = ok(b).sendMessage;
    expect(pb.userMessage.id).toBe(pa.userMessage.id);
    expect(pb.assistantMessage.id).toBe(pa.assistantMessage.id);
    expect(pa.assistantMessage).toMatchObject({ state: 'COMPLETE', content: 'One answer' });
    expect(pb.assistantMessage).toMatchObject({ state: 'COMPLETE', content: 'One answer' });

    expect(fake.requests).toHaveLength(1);
    const users = await server.sql(`select * from vision_messages where visionid = ? and sender = 'user'`, [visionId]);
    expect(users).toHaveLength(1);
    expect(users[0]!.clientmessageid).toBe('key-conc');
    expect(await messageRows(visionId)).toHaveLength(2);
    expect(await tokenRows(visionId)).toHaveLength(1);
  });
});

describe('busy rule', () => {
  test('concurrent sends without keys: one succeeds, the others get VISION_BUSY and store nothing', async () => {
    const user = newUser('busy');
    const visionId = await createVision(user);
    const h = hold();
    fake.enqueue({ kind: 'stream', chunks: ['Working', ' on it'], hold: h.promise });

    const sends = [1, 2, 3, 4].map((i) => send(user, visionId, `message ${i}`));
    await fake.waitForRequests(1);
    await settled(sends, 3); // the three losers answer while the winner's reply is held
    h.resolve();
    const results = await Promise.all(sends);

    const winners = results.filter((r) => !r.errors);
    const losers = results.filter((r) => r.errors);
    expect(winners).toHaveLength(1);
    expect(losers.map((r) => onlyError(r).code)).toEqual(['VISION_BUSY', 'VISION_BUSY', 'VISION_BUSY']);
    const win = winners[0]!.data!.sendMessage;
    expect(win.assistantMessage).toMatchObject({ state: 'COMPLETE', content: 'Working on it' });

    expect(fake.requests).toHaveLength(1);
    const rows = await messageRows(visionId);
    expect(rows.map((r) => r.id)).toEqual([win.userMessage.id, win.assistantMessage.id]);
    expect(await tokenRows(visionId)).toHaveLength(1);
  });

  test('a vision frozen while a send waits for its row lock: VISION_NOT_ACTIVE, nothing stored, updatedAt kept, no model call', async () => {
    const user = newUser('race');
    const visionId = await createVision(user);
    const before = await updatedAtOf(visionId);
    const calls = fake.requests.length;
    const lock = new PgClient({ connectionString: testDatabaseUrl() });
    await lock.connect();
    let result: GqlResult<unknown>;
    try {
      await lock.query('begin');
      await lock.query('select 1 from visions where id = $1 for update', [visionId]);
      const sending = send(user, visionId, 'Hello?');
      // the send's single statement waits on the row lock, then sees the committed status
      // (asked on another connection: a transaction sees one snapshot of pg_stat_activity)
      await waitUntil('the send waiting on the vision row', async () => {
        const rows = await server.sql<{ n: number }>(
          `select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like '%update visions set updatedat%status = ''active''%'`,
          [],
        );
        return rows[0]!.n > 0;
      });
      await lock.query(`update visions set status = 'frozen' where id = $1`, [visionId]);
      await lock.query('commit');
      result = await sending;
    } finally {
      await lock.query('rollback').catch(() => undefined);
      await lock.end();
    }
    const err = onlyError(result);
    expect(err.code).toBe('VISION_NOT_ACTIVE');
    expect(err.ext.status).toBe('FROZEN');
    expect(await messageRows(visionId)).toEqual([]);
    expect(await updatedAtOf(visionId)).toEqual(before);
    expect(fake.requests.length).toBe(calls);
  });

  test('a vision that stays ACTIVE but keeps refusing the turn: VISION_BUSY (reason vision_changing) after three tries, not a made-up status; nothing stored', async () => {
    const user = newUser('changing');
    const visionId = await createVision(user);
    const calls = fake.requests.length;
    // every update of this vision is skipped (a BEFORE trigger returning null), as when its status
    // flips away and back while each try runs: the turn's statement writes nothing, the status read
    // after it says ACTIVE
    const fn = `vp_test_skip_${visionId.replace(/-/g, '')}`;
    await server.sql(`create function ${fn}() returns trigger language plpgsql as $$ begin if old.id = '${visionId}' then return null; end if; return new; end $$`);
    await server.sql(`create trigger ${fn} before update on visions for each row execute function ${fn}()`);
    let result: GqlResult<unknown>;
    try {
      result = await send(user, visionId, 'Hello?');
    } finally {
      await server.sql(`drop trigger ${fn} on visions`);
      await server.sql(`drop function ${fn}()`);
    }
    const err = onlyError(result);
    expect(err.code).toBe('VISION_BUSY');
    expect(err.ext.reason).toBe('vision_changing');
    expect(err.ext.status).toBeUndefined();
    expect(await messageRows(visionId)).toEqual([]);
    expect(await tokenRows(visionId)).toEqual([]);
    expect(fake.requests.length).toBe(calls);
    // the vision takes messages again once it holds still
    const ok = await send(user, visionId, 'Hello again');
    expect(ok.errors).toBeUndefined();
  });

  test('a reply closed while a send waits for the vision row lock is in the model context (the turn read from before the lock is dropped)', async () => {
    // the turn reads the summary and the window in its own statement, whose snapshot is taken
    // before the row lock is granted: here that snapshot still shows the earlier reply STREAMING
    const user = newUser('stale-read');
    const visionId = await createVision(user);
    const [u1, r1] = [randomUUID(), randomUUID()];
    await server.sql(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, replyto, heartbeatat, createdat) values
         (?, ?, 'user', 'text', 'Where to start', 'complete', null, null, clock_timestamp() - interval '2 seconds'),
         (?, ?, 'assistant', 'text', 'Part of', 'streaming', ?, clock_timestamp(), clock_timestamp() - interval '1 second')`,
      [u1, visionId, r1, visionId, u1],
    );
    fake.enqueue({ kind: 'stream', chunks: ['Next step.'] });
    const lock = new PgClient({ connectionString: testDatabaseUrl() });
    await lock.connect();
    let result: GqlResult<SendMessageMutation>;
    try {
      await lock.query('begin');
      // the reply's final write as the dialog does it: the reply and its vision's updatedat, committed later
      await lock.query(`update vision_messages set content = 'Part of the plan: shoes first.', state = 'complete', heartbeatat = null where id = $1`, [r1]);
      await lock.query('update visions set updatedat = greatest(now(), updatedat) where id = $1', [visionId]);
      const sending = send(user, visionId, 'And then');
      await waitUntil('the send waiting on the vision row', async () => {
        const rows = await server.sql<{ n: number }>(
          `select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like '%update visions set updatedat%status = ''active''%'`,
          [],
        );
        return rows[0]!.n > 0;
      });
      await lock.query('commit');
      result = await sending;
    } finally {
      await lock.query('rollback').catch(() => undefined);
      await lock.end();
    }
    expect(result.errors).toBeUndefined();
    expect(result.data!.sendMessage.assistantMessage).toMatchObject({ state: 'COMPLETE', content: 'Next step.' });
    const messages = fake.requests.at(-1)!.body.messages as { role: string; content: string }[];
    expect(messages.slice(1)).toEqual([
      { role: 'user', content: 'Where to start' },
      { role: 'assistant', content: 'Part of the plan: shoes first.' },
      { role: 'user', content: 'And then' },
    ]);
  });

  test('retryReply while a reply streams, and two concurrent retries: VISION_BUSY, nothing stored, one model call each time', async () => {
    const user = newUser('busy-retry');
    const visionId = await createVision(user);
    fake.enqueue({ kind: 'status', status: 500 });
    const failed = onlyError(await send(user, visionId, 'first try'));
    expect(failed.code).toBe('LLM_FAILED');

    // a retry is running (held); a second retry and a new send meet the busy rule
    const h = hold();
    fake.enqueue({ kind: 'stream', chunks: ['Second', ' time'], hold: h.promise });
    const running = retry(user, visionId);
    await fake.waitForRequests(2);
    const [again, sendMeanwhile] = await Promise.all([retry(user, visionId), send(user, visionId, 'meanwhile')]);
    expect(onlyError(again).code).toBe('VISION_BUSY');
    expect(onlyError(sendMeanwhile).code).toBe('VISION_BUSY');
    h.resolve();
    const done = ok(await running).retryReply;
    expect(done.userMessage.id).toBe(failed.ext.userMessageId);
    expect(done.assistantMessage).toMatchObject({ state: 'COMPLETE', content: 'Second time' });

    // two retries at the same moment after another failure: exactly one runs
    fake.enqueue({ kind: 'status', status: 500 });
    const failed2 = onlyError(await send(user, visionId, 'second message'));
    const h2 = hold();
    fake.enqueue({ kind: 'stream', chunks: ['Only', ' once'], hold: h2.promise });
    const pair = [retry(user, visionId), retry(user, visionId)];
    await settled(pair, 1);
    h2.resolve();
    const results = await Promise.all(pair);
    expect(results.filter((r) => r.errors).map((r) => onlyError(r).code)).toEqual(['VISION_BUSY']);
    const winner = results.find((r) => !r.errors)!.data!.retryReply;
    expect(winner.userMessage.id).toBe(failed2.ext.userMessageId);
    // two failed sends and two retries that ran: the refused calls never reached the model
    expect(fake.requests).toHaveLength(4);
    const rows = await messageRows(visionId);
    expect(rows.map((r) => [r.sender, r.state, r.content])).toEqual([
      ['user', 'complete', 'first try'],
      ['assistant', 'failed', ''],
      ['assistant', 'complete', 'Second time'],
      ['user', 'complete', 'second message'],
      ['assistant', 'failed', ''],
      ['assistant', 'complete', 'Only once'],
    ]);
  });
});

// ------------------------------------------------------------------ status changes and stopReply

describe('freezing and deleting', () => {
  test('freezing during a generation stops the reply with its partial text; a frozen or deleted vision takes no messages', async () => {
    const user = newUser('freeze');
    const visionId = await createVision(user);
    const h = hold();
    fake.enqueue({ kind: 'stream', chunks: ['Partial answer', ' that never arrives'], hold: h.promise });

    const sending = send(user, visionId, 'Tell me everything');
    await fake.waitForRequests(1);
    await waitForStoredPartial(visionId, 'Partial answer');

    const frozen = ok(await setStatus(user, visionId, 'FROZEN')).setVisionStatus;
    expect(frozen.status).toBe('FROZEN');
    const pair = ok(await sending).sendMessage;
    h.resolve();
    expect(pair.assistantMessage).toMatchObject({ sender: 'ASSISTANT', state: 'STOPPED', content: 'Partial answer' });
    expect(pair.userMessage).toMatchObject({ state: 'COMPLETE', content: 'Tell me everything' });

    const vision = ok(await server.gql(GetVisionDocument, { id: visionId }, { user })).vision!;
    expect(vision.status).toBe('FROZEN');
    const rows = await messageRows(visionId);
    expect(rows).toHaveLength(2);
    expect(rows[1]).toMatchObject({ id: pair.assistantMessage.id, state: 'stopped', content: 'Partial answer' });
    const tokens = await tokenRows(visionId);
    expect(tokens).toHaveLength(1);
    expect(tokens[0]!.meta.finish).toBe('stopped');

    // frozen: nothing is stored (not even the vision's updatedat bump), the model is not asked
    const updatedBefore = await updatedAtOf(visionId);
    const e1 = onlyError(await send(user, visionId, 'Are you there?'));
    expect(await updatedAtOf(visionId)).toEqual(updatedBefore);
    expect(e1.code).toBe('VISION_NOT_ACTIVE');
    expect(e1.ext.status).toBe('FROZEN');
    const e2 = onlyError(await retry(user, visionId));
    expect(e2.code).toBe('VISION_NOT_ACTIVE');
    expect(e2.ext.status).toBe('FROZEN');

    // deleted: likewise
    expect(ok(await setStatus(user, visionId, 'DELETED')).setVisionStatus.status).toBe('DELETED');
    const e3 = onlyError(await send(user, visionId, 'Hello?'));
    expect(e3.code).toBe('VISION_NOT_ACTIVE');
    expect(e3.ext.status).toBe('DELETED');
    const e4 = onlyError(await retry(user, visionId));
    expect(e4.code).toBe('VISION_NOT_ACTIVE');
    expect(e4.ext.status).toBe('DELETED');

    expect(await messageRows(visionId)).toHaveLength(2);
    expect(fake.requests).toHaveLength(1);
    expect(await tokenRows(visionId)).toHaveLength(1);
  });

  test('retryReply on a frozen vision whose last message has no reply → VISION_NOT_ACTIVE', async () => {
    const user = newUser('freeze-retry');
    const visionId = await createVision(user);
    fake.enqueue({ kind: 'status', status: 500 });
    expect(onlyError(await send(user, visionId, 'Hello')).code).toBe('LLM_FAILED');
    expect(ok(await setStatus(user, visionId, 'FROZEN')).setVisionStatus.status).toBe('FROZEN');

    const err = onlyError(await retry(user, visionId));
    expect(err.code).toBe('VISION_NOT_ACTIVE');
    expect(err.ext.status).toBe('FROZEN');
    expect(fake.requests).toHaveLength(1);
    expect(await messageRows(visionId)).toHaveLength(2);
  });
});

describe('stopReply', () => {
  test('stops a held generation: STOPPED with the partial text, one estimated tokenscount row with finish stopped', async () => {
    const user = newUser('stop');
    const visionId = await createVision(user);
    const h = hold();
    fake.enqueue({ kind: 'stream', chunks: ['The first', ' and the rest'], hold: h.promise });

    const sending = send(user, visionId, 'Go on');
    await fake.waitForRequests(1);
    await waitForStoredPartial(visionId, 'The first');

    expect(ok(await stop(user, visionId)).stopReply).toBe(true);
    const pair = ok(await sending).sendMessage;
    h.resolve();
    expect(pair.assistantMessage).toMatchObject({ state: 'STOPPED', content: 'The first' });

    const row = await messageRow(pair.assistantMessage.id);
    expect(row).toMatchObject({ state: 'stopped', content: 'The first' });
    expect(row!.heartbeatat).toBeNull();

    const tokens = await tokenRows(visionId);
    expect(tokens).toHaveLength(1);
    const t = tokens[0]!;
    expect(t.meta).toMatchObject({ module: 'vision', visionid: visionId, messageid: pair.assistantMessage.id, finish: 'stopped', estimated: true });
    expect(t.rawusage).toBeNull();
    expect(t.completiontokens).toBeGreaterThan(0);
    expect(t.totaltokens).toBe(t.prompttokens + t.completiontokens);

    // nothing runs any more
    expect(ok(await stop(user, visionId)).stopReply).toBe(false);
    // the vision is still ACTIVE and usable
    const next = ok(await send(user, visionId, 'Continue please')).sendMessage;
    expect(next.assistantMessage).toMatchObject({ state: 'COMPLETE', content: DEFAULT_REPLY });
    // the stopped partial reply is part of the history
    expect(fake.requests[1]!.body.messages.slice(1)).toEqual([
      { role: 'user', content: 'Go on' },
      { role: 'assistant', content: 'The first' },
      { role: 'user', content: 'Continue please' },
    ]);
  });

  test('false when nothing runs', async () => {
    const user = newUser('stop-none');
    const visionId = await createVision(user);
    expect(ok(await stop(user, visionId)).stopReply).toBe(false);
    ok(await send(user, visionId, 'Hi'));
    expect(ok(await stop(user, visionId)).stopReply).toBe(false);
    const rows = await messageRows(visionId);
    expect(rows.map((r) => r.state)).toEqual(['complete', 'complete']);
  });
});

// ------------------------------------------------------------------ disconnecting client

describe('client disconnect', () => {
  test('the reply is generated and stored COMPLETE after the client went away', async () => {
    const user = newUser('gone');
    const visionId = await createVision(user);
    const h = hold();
    fake.enqueue({ kind: 'stream', chunks: ['Full', ' text', ' of the', ' reply'], hold: h.promise });

    const ac = new AbortController();
    const request = fetch(server.graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': user },
      body: JSON.stringify({ query: print(SendMessageDocument), variables: { input: { visionId, content: 'Are you there?' } } }),
      signal: ac.signal,
    }).then(
      (res) => res.text(),
      (err: unknown) => err,
    );
    await fake.waitForRequests(1);
    ac.abort();
    const outcome = await request;
    expect((outcome as { name?: string }).name).toBe('AbortError');
    h.resolve();

    const reply = await waitUntil('the reply to be COMPLETE', async () => {
      const [row] = await server.sql(`select * from vision_messages where visionid = ? and sender = 'assistant'`, [visionId]);
      return row && row.state === 'complete' ? row : undefined;
    });
    expect(reply.content).toBe('Full text of the reply');
    expect(fake.requests[0]!.aborted).toBe(false);
    const rows = await messageRows(visionId);
    expect(rows.map((r) => [r.sender, r.state, r.content])).toEqual([
      ['user', 'complete', 'Are you there?'],
      ['assistant', 'complete', 'Full text of the reply'],
    ]);
    const tokens = await waitUntil('the tokenscount row', async () => {
      const t = await tokenRows(visionId);
      return t.length ? t : undefined;
    });
    expect(tokens).toHaveLength(1);
    expect(tokens[0]!.meta.finish).toBe('complete');
  });
});

// ------------------------------------------------------------------ ownership and input

describe('ownership', () => {
  test("another user's vision behaves exactly like a random id: NOT_FOUND, nothing stored", async () => {
    const owner = newUser('owner');
    const stranger = newUser('stranger');
    const visionId = await createVision(owner);
    const randomId = randomUUID();

    const pairs: [GqlResult<unknown>, GqlResult<unknown>][] = [
      [await send(stranger, visionId, 'Hi there'), await send(stranger, randomId, 'Hi there')],
      [await retry(stranger, visionId), await retry(stranger, randomId)],
      [await stop(stranger, visionId), await stop(stranger, randomId)],
    ];
    for (const [theirs, random] of pairs) {
      const a = onlyError(theirs);
      const b = onlyError(random);
      expect(a.code).toBe('NOT_FOUND');
      expect(b.code).toBe('NOT_FOUND');
      expect(a.message).toBe(b.message);
      expect(Object.keys(a.ext).sort()).toEqual(Object.keys(b.ext).sort());
    }
    expect(await messageRows(visionId)).toHaveLength(0);
    expect(fake.requests).toHaveLength(0);
    const counted = await server.sql(`select count(*)::int as n from tokenscount where clientid = ?`, [stranger]);
    expect(counted[0]!.n).toBe(0);
  });

  test("repeating the owner's clientMessageId on the owner's vision gives a stranger NOT_FOUND, not the owner's turn", async () => {
    const owner = newUser('keyOwner');
    const stranger = newUser('keyThief');
    const visionId = await createVision(owner);
    fake.enqueue({ kind: 'stream', chunks: ['Private answer'] });
    const first = ok(await send(owner, visionId, 'Private question', 'shared-key-1')).sendMessage;
    expect(first.assistantMessage.content).toBe('Private answer');
    const requests = fake.requests.length;

    const theirs = await send(stranger, visionId, 'Give me that', 'shared-key-1');
    expect(onlyError(theirs).code).toBe('NOT_FOUND');
    expect(JSON.stringify(theirs)).not.toContain('Private');
    // the owner's repeat still returns the first turn, and nothing else was stored or asked
    const again = ok(await send(owner, visionId, 'Private question', 'shared-key-1')).sendMessage;
    expect(again.userMessage.id).toBe(first.userMessage.id);
    expect(await messageRows(visionId)).toHaveLength(2);
    expect(fake.requests).toHaveLength(requests);
  });
});

describe('bad input', () => {
  test('empty, whitespace-only and too long content, a malformed visionId, a too long clientMessageId → BAD_USER_INPUT; nothing stored', async () => {
    const user = newUser('bad');
    const visionId = await createVision(user);
    const bad: GqlResult<unknown>[] = [
      await send(user, visionId, ''),
      await send(user, visionId, '  \n\t  '),
      await send(user, visionId, 'x'.repeat(16_001)),
      await send(user, 'not-a-uuid', 'Hello'),
      await send(user, visionId, 'Hello', 'k'.repeat(201)),
      await retry(user, 'not-a-uuid'),
      await stop(user, '12345'),
    ];
    for (const r of bad) expect(onlyError(r).code).toBe('BAD_USER_INPUT');
    expect(await messageRows(visionId)).toHaveLength(0);
    expect(fake.requests).toHaveLength(0);
    expect(await tokenRows(visionId)).toHaveLength(0);

    // the limits themselves are accepted
    const atLimit = ok(await send(user, visionId, 'y'.repeat(16_000), 'k'.repeat(200))).sendMessage;
    expect(atLimit.userMessage.content).toHaveLength(16_000);
    expect(fake.requests).toHaveLength(1);
  });

  test('MAX_CONTENT_CHARS is honoured (server with MAX_CONTENT_CHARS=10)', async () => {
    const small = await startTestServer({ ...serverEnv, MAX_CONTENT_CHARS: '10' });
    try {
      const user = newUser('max10');
      const visionId = await createVision(user, 'Small', small);
      const tooLong = await send(user, visionId, '12345678901', undefined, small);
      expect(onlyError(tooLong).code).toBe('BAD_USER_INPUT');
      expect(await messageRows(visionId, small)).toHaveLength(0);
      expect(fake.requests).toHaveLength(0);

      // exactly 10 characters after trimming are fine
      const fits = ok(await send(user, visionId, '  1234567890  ', undefined, small)).sendMessage;
      expect(fits.userMessage.content).toBe('1234567890');
      expect(fake.requests).toHaveLength(1);
    } finally {
      await small.stop();
    }
  });
});

// ------------------------------------------------------------------ crash recovery

describe('crash recovery', () => {
  test('a new server closes a reply left STREAMING by a dead process (FAILED, interrupted); the vision works again', async () => {
    // an own database, so that no other running server's sweeper can close the row first
    const scratch = await createScratchDatabase('vp_crash');
    let first: TestServer | undefined;
    let second: TestServer | undefined;
    const pg = new PgClient({ connectionString: scratch.url });
    try {
      const env = { ...serverEnv, DATABASE_URL: scratch.url };
      first = await startTestServer(env); // migrates the scratch database
      const user = newUser('crash');
      const visionId = await createVision(user, 'Recover', first);
      await first.stop();
      first = undefined;

      await pg.connect();
      const userMsg = randomUUID();
      const stale = randomUUID();
      await pg.query(
        `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
         values ($1, $2, 'user', 'text', 'Before the crash', 'complete', now() - interval '1 hour 1 minute')`,
        [userMsg, visionId],
      );
      await pg.query(
        `insert into vision_messages (id, visionid, sender, messagetype, content, state, replyto, heartbeatat, createdat)
         values ($1, $2, 'assistant', 'text', 'half a rep', 'streaming', $3, now() - interval '1 hour', now() - interval '1 hour')`,
        [stale, visionId, userMsg],
      );

      second = await startTestServer(env);
      const [row] = await second.sql(`select * from vision_messages where id = ?`, [stale]);
      expect(row).toMatchObject({ state: 'failed', content: 'half a rep' });
      expect(row!.payload?.error?.reason).toBe('interrupted');
      expect(row!.heartbeatat).toBeNull();

      const pair = ok(await send(user, visionId, 'After the crash', undefined, second)).sendMessage;
      expect(pair.assistantMessage).toMatchObject({ state: 'COMPLETE', content: DEFAULT_REPLY });
      expect(fake.requests).toHaveLength(1);
      expect(fake.requests[0]!.body.messages.slice(1)).toEqual([
        { role: 'user', content: 'Before the crash' },
        { role: 'user', content: 'After the crash' },
      ]);
    } finally {
      await pg.end().catch(() => undefined);
      await first?.stop();
      await second?.stop();
      await scratch.drop();
    }
  });

  test('a send to a vision blocked by a stale STREAMING reply works and closes that reply', async () => {
    const user = newUser('stale');
    const visionId = await createVision(user);
    const stale = randomUUID();
    await server.sql(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, heartbeatat, createdat)
       values (?::uuid, ?::uuid, 'assistant', 'text', 'orphan', 'streaming', now() - interval '1 hour', now() - interval '1 hour')`,
      [stale, visionId],
    );
    const pair = ok(await send(user, visionId, 'Anyone?')).sendMessage;
    expect(pair.assistantMessage).toMatchObject({ state: 'COMPLETE', content: DEFAULT_REPLY });
    const row = await messageRow(stale);
    expect(row).toMatchObject({ state: 'failed', content: 'orphan' });
    expect(row!.payload?.error?.reason).toBe('interrupted');
  });
});

// ------------------------------------------------------------------ subscriptions

/** Opens a graphql-ws client that is closed after the test; resolves once the connection is acknowledged. */
function openWs(user?: string): WsClient {
  const c = wsClient(server.url, user ? { user } : {});
  wsClients.push(c);
  return c;
}

function connected(c: WsClient): Promise<void> {
  return new Promise<void>((resolve) => {
    const off = c.on('connected', () => {
      off();
      resolve();
    });
  });
}

/** Flattens what a subscription reported as errors (GraphQL errors, arrays of them, close events). */
function flatErrors(errors: unknown[]): any[] {
  return errors.flatMap((e) => (Array.isArray(e) ? e : [e]));
}

describe('messageAdded over graphql-ws', () => {
  test('the owner gets the user message at once and the final reply; nobody else gets anything', async () => {
    const userA = newUser('wsA');
    const userB = newUser('wsB');
    const a1 = await createVision(userA, 'Vision A1');
    const b1 = await createVision(userB, 'Vision B1');

    const clientA = openWs(userA);
    const clientB = openWs(userB);
    const aUp = connected(clientA);
    const bUp = connected(clientB);
    const subA = collect(clientA, MessageAddedDocument, { visionId: a1 });
    const subB = collect(clientB, MessageAddedDocument, { visionId: b1 });
    await Promise.all([aUp, bUp]);
    await sleep(300); // let the server register both subscriptions

    const h = hold();
    fake.enqueue({ kind: 'stream', chunks: ['Step', ' one'], hold: h.promise });
    const sending = send(userA, a1, ' First message ');
    await fake.waitForRequests(1);
    await subA.waitFor(1);
    // the user message arrives while the reply is still being generated
    expect(subA.events).toHaveLength(1);
    expect(subA.events[0]!.messageAdded).toMatchObject({ visionId: a1, sender: 'USER', state: 'COMPLETE', content: 'First message' });
    h.resolve();
    const pair = ok(await sending).sendMessage;

    await subA.waitFor(2);
    await sleep(300); // nothing else may follow
    expect(subA.events.map((e) => e.messageAdded)).toEqual([
      expect.objectContaining({ id: pair.userMessage.id, sender: 'USER', state: 'COMPLETE', content: 'First message' }),
      expect.objectContaining({ id: pair.assistantMessage.id, sender: 'ASSISTANT', state: 'COMPLETE', content: 'Step one' }),
    ]);
    expect(subA.errors).toEqual([]);
    expect(subB.events).toEqual([]);
    expect(subB.errors).toEqual([]);
    subA.stop();
    subB.stop();
  });

  test('one event, many subscribers: each document gets its own shape, each vision only its own events, a completed subscription stops', async () => {
    const user = newUser('wsMany');
    const v1 = await createVision(user, 'Many subscribers');
    const v2 = await createVision(user, 'Quiet vision');
    const clients = [openWs(user), openWs(user), openWs(user), openWs(user)];
    const up = Promise.all(clients.map(connected));
    // events are executed once per distinct (document, variables) and shared: these four differ
    const SLIM = parse('subscription Slim($visionId: ID!) { messageAdded(visionId: $visionId) { id content } }') as typeof MessageAddedDocument;
    const full1 = collect(clients[0]!, MessageAddedDocument, { visionId: v1 });
    const full2 = collect(clients[1]!, MessageAddedDocument, { visionId: v1 });
    const slim = collect(clients[2]!, SLIM, { visionId: v1 });
    const other = collect(clients[3]!, SLIM, { visionId: v2 });
    await up;
    await sleep(300);

    fake.enqueue({ kind: 'stream', chunks: ['First', ' reply'] });
    const first = ok(await send(user, v1, 'one')).sendMessage;
    await Promise.all([full1.waitFor(2), full2.waitFor(2), slim.waitFor(2)]);
    expect(full2.events).toEqual(full1.events);
    expect(full1.events.map((e) => e.messageAdded)).toEqual([
      expect.objectContaining({ id: first.userMessage.id, visionId: v1, sender: 'USER', content: 'one', file: null }),
      expect.objectContaining({ id: first.assistantMessage.id, visionId: v1, sender: 'ASSISTANT', content: 'First reply' }),
    ]);
    expect(slim.events.map((e) => e.messageAdded)).toEqual([
      { id: first.userMessage.id, content: 'one' },
      { id: first.assistantMessage.id, content: 'First reply' },
    ]);

    full2.stop();
    await sleep(200);
    fake.enqueue({ kind: 'stream', chunks: ['Second'] });
    const second = ok(await send(user, v1, 'two')).sendMessage;
    await Promise.all([full1.waitFor(4), slim.waitFor(4)]);
    expect(full1.events.map((e) => e.messageAdded.id).slice(2)).toEqual([second.userMessage.id, second.assistantMessage.id]);
    await sleep(300);
    expect(full2.events).toHaveLength(2);
    expect(other.events).toEqual([]);
    for (const sub of [full1, full2, slim, other]) expect(sub.errors).toEqual([]);
    full1.stop();
    slim.stop();
    other.stop();
  });

  test('subscription documents over WebSocket get the same limits as over HTTP', async () => {
    const user = newUser('wsLimits');
    const v1 = await createVision(user, 'Limits');
    const aliases = Array.from({ length: 20 }, (_, i) => `a${i}: id`).join(' ');
    const sub = collect(openWs(user), parse(`subscription ($visionId: ID!) { messageAdded(visionId: $visionId) { ${aliases} } }`) as typeof MessageAddedDocument, {
      visionId: v1,
    });
    await sub.ended;
    expect(sub.events).toEqual([]);
    expect(flatErrors(sub.errors).map((e) => String(e?.message))).toEqual([expect.stringMatching(/alias/i)]);
  });

  test("subscribing to someone else's vision gives NOT_FOUND", async () => {
    const userA = newUser('wsOwner');
    const userB = newUser('wsThief');
    const a1 = await createVision(userA, 'Private');
    const clientB = openWs(userB);
    const sub = collect(clientB, MessageAddedDocument, { visionId: a1 });
    await sub.ended;
    expect(sub.events).toEqual([]);
    const codes = flatErrors(sub.errors).map((e) => e?.extensions?.code);
    expect(codes).toEqual(['NOT_FOUND']);
  });

  test('a connection without identity is closed with 4401', async () => {
    const a1 = await createVision(newUser('wsAnon'), 'Anon target');
    const anon = openWs();
    let closeCode: number | undefined;
    anon.on('closed', (event) => {
      closeCode = (event as { code?: number }).code;
    });
    const sub = collect(anon, MessageAddedDocument, { visionId: a1 });
    await sub.ended;
    expect(sub.events).toEqual([]);
    expect(closeCode).toBe(4401);
    const errs = flatErrors(sub.errors);
    expect(errs).toHaveLength(1);
    expect(errs[0]?.code).toBe(4401);
  });
});

describe('replyDelta over graphql-ws', () => {
  test('delivers seq 1..n whose deltas concatenate to the stored reply, then done with COMPLETE', async () => {
    const user = newUser('delta');
    const visionId = await createVision(user);
    const client = openWs(user);
    const up = connected(client);
    const sub = collect(client, ReplyDeltasDocument, { visionId });
    await up;
    await sleep(300);

    const chunks = ['Begin', ' with', ' ten', ' minutes', ' a day.'];
    fake.enqueue({ kind: 'stream', chunks, chunkDelayMs: 20 });
    const pair = ok(await send(user, visionId, 'How do I begin?')).sendMessage;
    expect(pair.assistantMessage.content).toBe('Begin with ten minutes a day.');

    const events = (await sub.waitFor(chunks.length + 1)).map((e) => e.replyDelta);
    await sleep(200);
    expect(sub.events).toHaveLength(chunks.length + 1);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events.every((e) => e.visionId === visionId && e.replyId === pair.assistantMessage.id)).toBe(true);
    expect(events.slice(0, -1).map((e) => [e.delta, e.done, e.state])).toEqual(chunks.map((c) => [c, false, 'STREAMING']));
    const last = events[events.length - 1]!;
    expect(last.done).toBe(true);
    expect(last.state).toBe('COMPLETE');
    expect(events.map((e) => e.delta).join('')).toBe(pair.assistantMessage.content);
    const row = await messageRow(pair.assistantMessage.id);
    expect(events.map((e) => e.delta).join('')).toBe(row!.content);
    expect(sub.errors).toEqual([]);
    sub.stop();
  });
});

// ------------------------------------------------------------------ SDK retries

describe('SDK retries (LLM_MAX_RETRIES=2)', () => {
  let retrying: TestServer;
  beforeAll(async () => {
    retrying = await startTestServer({ ...serverEnv, LLM_MAX_RETRIES: '2' });
  });
  afterAll(() => retrying?.stop());

  test('a 500 and a 429 before the first byte are retried: one reply, one tokenscount row', async () => {
    const user = newUser('retries');
    const visionId = await createVision(user, 'Retry', retrying);
    // retry-after-ms keeps the SDK's backoff short
    fake.enqueue(
      { kind: 'status', status: 500, headers: { 'retry-after-ms': '10' } },
      { kind: 'status', status: 429, headers: { 'retry-after-ms': '10' } },
      { kind: 'stream', chunks: ['Third ', 'time ', 'lucky.'] },
    );
    const pair = ok(await send(user, visionId, 'Try hard', undefined, retrying)).sendMessage;
    expect(pair.assistantMessage).toMatchObject({ state: 'COMPLETE', content: 'Third time lucky.' });
    expect(fake.requests).toHaveLength(3);
    const rows = await tokenRows(visionId, retrying);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.meta).toMatchObject({ finish: 'complete', messageid: pair.assistantMessage.id });
  });

  test('a stream cut after the first bytes is never sent twice: LLM_FAILED with what arrived', async () => {
    const user = newUser('retries');
    const visionId = await createVision(user, 'No double', retrying);
    fake.enqueue({ kind: 'cut', chunks: ['Half an ', 'answer'] });
    const failed = onlyError(await send(user, visionId, 'Go', undefined, retrying));
    expect(failed.code).toBe('LLM_FAILED');
    expect(failed.ext.reason).toBe('upstream_error');
    expect(fake.requests).toHaveLength(1);
    const reply = await messageRow(failed.ext.replyId);
    expect(reply).toMatchObject({ state: 'failed', content: 'Half an answer' });
  });
});
