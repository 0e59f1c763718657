/**
 * Metering under faults: one tokenscount row per model call, whatever fails. The row is written
 * pending before the request leaves and settled when the call ends (retried through database
 * faults), or by a sweeper when the process died; truncated streams are not stored as complete;
 * the breaker counts only provider faults.
 *
 * The file runs on its own scratch database: it injects database faults (a trigger that fails
 * chosen writes, a renamed table) and leaves pending rows on purpose, which must touch neither
 * the other test files nor their sweepers. Model calls go through the official SDK to the fake.
 */
import { countTokens } from 'gpt-tokenizer';
import { Client as PgClient } from 'pg';
import pino from 'pino';
import { poolRunner, type SqlRunner } from '../src/db/sql';
import { BreakerOpenError, ModelBreaker } from '../src/llm/breaker';
import { createOpenAIClient, type OpenAI } from '../src/llm/openai.client';
import {
  callModelAndLogTokens,
  isProviderFault,
  settleAbandonedCalls,
  settlePendingCall,
  TokensCountWriteError,
  type CallModelParams,
} from '../src/tokenscount/call-model';
import { CreateVisionDocument, SendMessageDocument } from './generated/graphql';
import { createScratchDatabase } from './support/db';
import { startFakeOpenAI, type Behaviour, type FakeOpenAI } from './support/fake-openai';
import { spawnServer, type ServerProcess } from './support/process';
import { newUser, postGraphQL, startTestServer, type TestServer } from './support/server';
import { print } from 'graphql';
import { sleep, waitUntil } from './support/wait';

let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let fake: FakeOpenAI;
let server: TestServer;
let pg: PgClient;
let sql: SqlRunner;
let client: OpenAI;
const releases: (() => void)[] = [];

const model = () => ({
  OPENAI_API_KEY: 'test-key',
  OPENAI_BASE_URL: fake.baseURL,
  LLM_MAX_RETRIES: '0',
  LLM_TIMEOUT_MS: '3000',
  REPLY_FLUSH_MS: '100',
  // the in-process server's sweepers stay out of the way of the rows this file leaves pending
  REPLY_STALE_MS: '600000',
});

beforeAll(async () => {
  scratch = await createScratchDatabase('vp_meter');
  fake = await startFakeOpenAI();
  server = await startTestServer({ ...model(), DATABASE_URL: scratch.url, LLM_BREAKER_THRESHOLD: '1000' });
  sql = poolRunner(server.db.orm.em);
  client = createOpenAIClient({ apiKey: 'test-key', baseURL: fake.baseURL, timeoutMs: 3000, maxRetries: 0, logger: pino({ level: 'silent' }) });
  pg = new PgClient({ connectionString: scratch.url });
  await pg.connect();
  // fails the chosen writes of tokenscount rows (by meta.mfkey or meta.visionid) with a real
  // PostgreSQL error; the sequence counts the failures (nextval survives the rollback)
  await pg.query(`
    create table mf_faults (op text not null, key text not null);
    create sequence mf_hits;
    create function mf_fault() returns trigger language plpgsql as $$
    begin
      if exists (select 1 from mf_faults f where f.op = tg_op and f.key = coalesce(new.meta ->> 'mfkey', new.meta ->> 'visionid')) then
        perform nextval('mf_hits');
        raise exception 'injected % fault', tg_op;
      end if;
      return new;
    end $$;
    create trigger mf_fault before insert or update on tokenscount for each row execute function mf_fault();
    -- the same for the final write of a reply (op 'REPLY', keyed by its vision): a reply leaving STREAMING
    create function mf_reply_fault() returns trigger language plpgsql as $$
    begin
      if old.state = 'streaming' and new.state <> 'streaming' and exists (select 1 from mf_faults f where f.op = 'REPLY' and f.key = new.visionid::text) then
        perform nextval('mf_hits');
        raise exception 'injected reply fault';
      end if;
      return new;
    end $$;
    create trigger mf_reply_fault before update on vision_messages for each row execute function mf_reply_fault();`);
});

beforeEach(() => fake.reset());

afterEach(async () => {
  for (const r of releases.splice(0)) r();
  await pg.query('delete from mf_faults');
  await pg.query(`alter table if exists tokenscount_away rename to tokenscount`);
});

afterAll(async () => {
  for (const r of releases.splice(0)) r();
  await pg?.end();
  await server?.stop();
  await fake?.close();
  await scratch?.drop();
});

// ------------------------------------------------------------------ helpers

function held(): { promise: Promise<void>; release(): void } {
  let release!: () => void;
  const promise = new Promise<void>((r) => (release = r));
  releases.push(release);
  return { promise, release };
}



let keys = 0;
const newKey = () => `mf-${process.pid}-${++keys}`;

const MESSAGES: CallModelParams['messages'] = [
  { role: 'system', content: 'You are a concise coach.' },
  { role: 'user', content: 'How do I start running?' },
];

function call(key: string, over: Partial<CallModelParams> = {}) {
  return callModelAndLogTokens({
    em: sql,
    client,
    clientId: `client-${key}`,
    clientType: 'user',
    provider: 'openai',
    model: 'gpt-4.1',
    messages: MESSAGES,
    meta: { module: 'metering-test', mfkey: key },
    timeoutMs: 3000,
    ...over,
  });
}

type Row = Record<string, any>;
const rowsOf = async (key: string): Promise<Row[]> =>
  (await pg.query(`select * from tokenscount where meta ->> 'mfkey' = $1 order by id`, [key])).rows;
const rowsOfVision = async (visionId: string): Promise<Row[]> =>
  (await pg.query(`select * from tokenscount where meta ->> 'visionid' = $1 order by id`, [visionId])).rows;

async function fault(op: 'INSERT' | 'UPDATE' | 'REPLY', key: string): Promise<void> {
  await pg.query(`insert into mf_faults (op, key) values ($1, $2)`, [op, key]);
}
async function hits(): Promise<number> {
  const { rows } = await pg.query(`select case when is_called then last_value else 0 end::int as n from mf_hits`);
  return rows[0].n;
}

/** A pino logger writing into an array (what the wrapper reports while it retries). */
function captureLogger() {
  const lines: { msg: string; attempt?: number }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

// ------------------------------------------------------------------ the row's life

describe('callModelAndLogTokens: one row per call', () => {
  test('writes the row pending before the request leaves, then settles it with the provider numbers beside the local estimate', async () => {
    const key = newKey();
    let atRequest: Row[] = [];
    fake.onRequest = async () => {
      atRequest = await rowsOf(key);
    };
    const usage = { prompt_tokens: 123, completion_tokens: 7, total_tokens: 130 };
    fake.enqueue({ kind: 'stream', chunks: ['Start', ' slow.'], usage });

    const r = await call(key);

    expect(atRequest).toHaveLength(1);
    expect(atRequest[0]).toMatchObject({ state: 'pending', clientid: `client-${key}`, completiontokens: 0, rawusage: null });
    expect(atRequest[0]!.meta).toMatchObject({ module: 'metering-test', mfkey: key, finish: 'pending', localPromptTokens: r.localPromptTokens });
    expect(atRequest[0]!.prompttokens).toBe(r.localPromptTokens);
    expect(r.localPromptTokens).toBeGreaterThan(0);

    expect(r).toMatchObject({ finish: 'complete', finishReason: 'stop', content: 'Start slow.', promptTokens: 123, completionTokens: 7, totalTokens: 130, estimated: false, settled: true });
    const rows = await rowsOf(key);
    expect(rows).toHaveLength(1);
    expect(String(rows[0]!.id)).toBe(r.tokensCountId);
    expect(rows[0]).toMatchObject({ state: 'settled', prompttokens: 123, completiontokens: 7, totaltokens: 130, rawusage: usage });
    expect(rows[0]!.meta).toEqual({ module: 'metering-test', mfkey: key, finish: 'complete', finishReason: 'stop', localPromptTokens: r.localPromptTokens });
  });

  test('the pending row cannot be written: no request reaches the model, TokensCountWriteError, no row', async () => {
    const key = newKey();
    await fault('INSERT', key);
    await expect(call(key)).rejects.toBeInstanceOf(TokensCountWriteError);
    expect(fake.requests).toHaveLength(0);
    expect(await rowsOf(key)).toHaveLength(0);
  });

  test('the final write is retried through a database outage (table gone for a while): the complete call keeps its provider numbers', async () => {
    const key = newKey();
    const h = held();
    const usage = { prompt_tokens: 40, completion_tokens: 3, total_tokens: 43 };
    fake.enqueue({ kind: 'stream', chunks: ['One', ' two', ' three'], usage, hold: h.promise });
    const { logger, lines } = captureLogger();
    const calling = call(key, { logger });
    await fake.waitForRequests(1);
    await pg.query('alter table tokenscount rename to tokenscount_away');
    h.release();
    await waitUntil('two failed attempts of the final write', () => lines.filter((l) => /retrying/.test(l.msg)).length >= 2);
    await pg.query('alter table tokenscount_away rename to tokenscount');

    const r = await calling;
    expect(r).toMatchObject({ finish: 'complete', content: 'One two three', promptTokens: 40, settled: true });
    const rows = await rowsOf(key);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ state: 'settled', prompttokens: 40, completiontokens: 3, totaltokens: 43 });
    expect(rows[0]!.meta).toMatchObject({ finish: 'complete' });
    expect(fake.requests).toHaveLength(1);
  });

  test('while the process closes, the final write gives up after a few attempts; settleAbandonedCalls settles the row later', async () => {
    const key = newKey();
    const young = newKey();
    await fault('UPDATE', key);
    const closing = new AbortController();
    closing.abort();
    const before = await hits();
    const r = await call(key, { closing: closing.signal });
    expect(r).toMatchObject({ finish: 'complete', settled: false });
    expect((await hits()) - before).toBeLessThanOrEqual(5);
    const [pending] = await rowsOf(key);
    expect(pending).toMatchObject({ state: 'pending', prompttokens: r.localPromptTokens, completiontokens: 0 });
    await pg.query('delete from mf_faults');

    // a pending row of a call that may still be running elsewhere stays pending
    await pg.query(
      `insert into tokenscount (clientid, clienttype, provider, model, prompttokens, completiontokens, totaltokens, meta, state) values ('c', 'user', 'openai', 'm', 9, 0, 9, $1, 'pending')`,
      [{ mfkey: young, finish: 'pending' }],
    );
    await pg.query(`update tokenscount set createdat = now() - interval '10 minutes' where meta ->> 'mfkey' = $1`, [key]);
    expect(await settleAbandonedCalls(sql, { olderThanMs: 60_000 })).toBe(1);

    const [settled] = await rowsOf(key);
    expect(settled).toMatchObject({ state: 'settled', prompttokens: r.localPromptTokens, completiontokens: 0, totaltokens: r.localPromptTokens });
    expect(settled!.meta).toMatchObject({ mfkey: key, finish: 'failed', reason: 'interrupted', estimated: true });
    expect((await rowsOf(young))[0]).toMatchObject({ state: 'pending' });
    expect(await settleAbandonedCalls(sql, { olderThanMs: 60_000 })).toBe(0);
    await pg.query(`delete from tokenscount where meta ->> 'mfkey' = $1`, [young]);
  });

  test('settlePendingCall settles a pending row by meta (or id) with an estimate of the saved text; settled rows are left alone', async () => {
    const key = newKey();
    const messageid = `msg-${key}`;
    const insert = async (state: string, meta: Record<string, unknown>) =>
      (
        await pg.query(
          `insert into tokenscount (clientid, clienttype, provider, model, prompttokens, completiontokens, totaltokens, meta, state) values ('c', 'user', 'openai', 'm', 50, $3, $4, $1, $2) returning id`,
          [meta, state, state === 'settled' ? 5 : 0, state === 'settled' ? 55 : 50],
        )
      ).rows[0].id as string;
    const done = await insert('settled', { mfkey: key, messageid, finish: 'complete' });
    const pending = await insert('pending', { mfkey: key, messageid, module: 'vision', finish: 'pending' });
    const text = 'Half of a reply that was saved';

    expect(await settlePendingCall(sql, { meta: { messageid }, completionText: text, reason: 'interrupted' })).toBe(1);
    const rows = await rowsOf(key);
    expect(rows.find((x) => x.id === done)).toMatchObject({ state: 'settled', completiontokens: 5, totaltokens: 55, meta: { finish: 'complete' } });
    const p = rows.find((x) => x.id === pending)!;
    expect(p).toMatchObject({ state: 'settled', prompttokens: 50, completiontokens: countTokens(text), totaltokens: 50 + countTokens(text) });
    expect(p.meta).toMatchObject({ module: 'vision', finish: 'failed', reason: 'interrupted', estimated: true });
    expect(await settlePendingCall(sql, { meta: { messageid }, completionText: text })).toBe(0);

    const byId = await insert('pending', { mfkey: key, finish: 'pending' });
    expect(await settlePendingCall(sql, { id: String(byId) })).toBe(1);
    expect((await rowsOf(key)).find((x) => x.id === byId)).toMatchObject({ state: 'settled', completiontokens: 0, meta: { finish: 'failed', reason: 'interrupted' } });
  });
});

// ------------------------------------------------------------------ how streams end

describe('callModelAndLogTokens: stream ends and failures', () => {
  const ends: { name: string; b: Partial<Extract<Behaviour, { kind: 'stream' }>>; finish: string; finishReason: string | null; reason?: string }[] = [
    { name: 'no finish_reason, clean [DONE]', b: { finishReason: null }, finish: 'failed', finishReason: null, reason: 'bad_response' },
    { name: 'no finish_reason, clean end of body without [DONE]', b: { finishReason: null, done: false }, finish: 'failed', finishReason: null, reason: 'bad_response' },
    { name: 'length', b: { finishReason: 'length' }, finish: 'complete', finishReason: 'length' },
    { name: 'content_filter', b: { finishReason: 'content_filter' }, finish: 'complete', finishReason: 'content_filter' },
  ];

  test.each(ends)('$name → $finish ($finishReason)', async ({ b, finish, finishReason, reason }) => {
    const key = newKey();
    fake.enqueue({ kind: 'stream', chunks: ['Part', ' of it'], ...b });
    const r = await call(key);
    expect(r).toMatchObject({ finish, finishReason, content: 'Part of it', settled: true });
    expect(r.reason).toBe(reason);
    if (reason) expect(isProviderFault(r)).toBe(true);
    const rows = await rowsOf(key);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.meta).toMatchObject({ finish, ...(reason ? { reason } : {}), ...(finishReason ? { finishReason } : {}) });
    if (!finishReason) expect(rows[0]!.meta.finishReason).toBeUndefined();
  });

  const failures: { name: string; b: Behaviour; reason: string; fault: boolean; status?: number }[] = [
    { name: '400 (context too long)', b: { kind: 'status', status: 400, body: { error: { message: "This model's maximum context length is 128000 tokens.", type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' } } }, reason: 'bad_response', fault: false, status: 400 },
    { name: '404', b: { kind: 'status', status: 404 }, reason: 'bad_response', fault: false, status: 404 },
    { name: '413', b: { kind: 'status', status: 413 }, reason: 'bad_response', fault: false, status: 413 },
    { name: '422', b: { kind: 'status', status: 422 }, reason: 'bad_response', fault: false, status: 422 },
    { name: '401', b: { kind: 'status', status: 401 }, reason: 'upstream_error', fault: false, status: 401 },
    { name: '403', b: { kind: 'status', status: 403 }, reason: 'upstream_error', fault: false, status: 403 },
    { name: '429', b: { kind: 'status', status: 429 }, reason: 'rate_limited', fault: true, status: 429 },
    { name: '500', b: { kind: 'status', status: 500 }, reason: 'upstream_error', fault: true, status: 500 },
    { name: '503', b: { kind: 'status', status: 503 }, reason: 'upstream_error', fault: true, status: 503 },
    { name: 'connection cut mid-stream', b: { kind: 'cut', chunks: ['Half'] }, reason: 'upstream_error', fault: true },
    { name: 'malformed event', b: { kind: 'malformed', chunks: ['Half'] }, reason: 'bad_response', fault: true },
    { name: 'hanging upstream', b: { kind: 'hang' }, reason: 'timeout', fault: true },
  ];

  test.each(failures)('$name → $reason, provider fault: $fault', async ({ b, reason, fault: providerFault, status }) => {
    const key = newKey();
    fake.enqueue(b);
    const r = await call(key, { timeoutMs: 500 });
    expect(r).toMatchObject({ finish: 'failed', reason, providerFault, finishReason: null, settled: true });
    expect(r.status).toBe(status);
    expect(isProviderFault(r)).toBe(providerFault);
    const rows = await rowsOf(key);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ state: 'settled' });
    expect(rows[0]!.meta).toMatchObject({ finish: 'failed', reason, estimated: true, ...(status ? { status } : {}) });
    expect(fake.requests).toHaveLength(1);
  });
});

// ------------------------------------------------------------------ the breaker

describe('ModelBreaker counts only provider faults', () => {
  const breakers: ModelBreaker[] = [];
  afterAll(() => breakers.forEach((b) => b.shutdown()));

  function breaker(threshold: number, cooldownMs: number) {
    const states: string[] = [];
    let waiters: { state: string; resolve: () => void }[] = [];
    const b = new ModelBreaker({
      threshold,
      cooldownMs,
      onStateChange: (state) => {
        states.push(state);
        const ready = waiters.filter((w) => w.state === state);
        waiters = waiters.filter((w) => w.state !== state);
        for (const w of ready) w.resolve();
      },
    });
    breakers.push(b);
    const next = (state: string) => new Promise<void>((resolve) => waiters.push({ state, resolve }));
    return { b, states, next };
  }

  test("many 400s (one user's request) never open it, 500s do; an open breaker makes no call and writes no row", async () => {
    const { b } = breaker(3, 60_000);
    const key = newKey();
    for (let i = 0; i < 8; i++) {
      fake.enqueue({ kind: 'status', status: 400 });
      const r = await b.run(() => call(key), isProviderFault);
      expect(r.reason).toBe('bad_response');
      expect(b.opened).toBe(false);
    }
    let fired = 0;
    while (!b.opened && fired < 20) {
      fake.enqueue({ kind: 'status', status: 500 });
      expect((await b.run(() => call(key), isProviderFault)).reason).toBe('upstream_error');
      fired++;
    }
    expect(b.opened).toBe(true);
    const requests = fake.requests.length;
    expect(requests).toBe(8 + fired);
    await expect(b.run(() => call(key), isProviderFault)).rejects.toBeInstanceOf(BreakerOpenError);
    expect(fake.requests).toHaveLength(requests);
    expect(await rowsOf(key)).toHaveLength(requests);
  });

  test('a call that throws before reaching the model (its row cannot be written) does not count; while half-open it keeps the breaker open', async () => {
    const key = newKey();
    await fault('INSERT', key);
    const closed = breaker(2, 60_000);
    for (let i = 0; i < 6; i++) {
      await expect(closed.b.run(() => call(key), isProviderFault)).rejects.toBeInstanceOf(TokensCountWriteError);
      expect(closed.b.opened).toBe(false);
    }
    expect(fake.requests).toHaveLength(0);

    const { b, next, states } = breaker(2, 300);
    const other = newKey();
    for (let i = 0; i < 2; i++) {
      fake.enqueue({ kind: 'status', status: 503 });
      await b.run(() => call(other), isProviderFault);
    }
    expect(b.opened).toBe(true);
    await next('half-open');
    // the probe never reached the provider: no reason to close
    await expect(b.run(() => call(key), isProviderFault)).rejects.toBeInstanceOf(TokensCountWriteError);
    expect(b.opened).toBe(true);
    await next('half-open');
    const r = await b.run(() => call(other), isProviderFault);
    expect(r.finish).toBe('complete');
    expect(states).toEqual(['open', 'half-open', 'open', 'half-open', 'closed']);
    expect(await rowsOf(key)).toHaveLength(0);
    expect(await rowsOf(other)).toHaveLength(3);
  });
});

// ------------------------------------------------------------------ through the dialog

async function createVision(s: { gql: TestServer['gql'] }, user: string): Promise<string> {
  const r = await s.gql(CreateVisionDocument, { input: { title: 'Metering' } }, { user });
  expect(r.errors).toBeUndefined();
  return r.data!.createVision.id;
}

const send = (s: { gql: TestServer['gql'] }, user: string, visionId: string, content: string) =>
  s.gql(SendMessageDocument, { input: { visionId, content } }, { user });

type Usage = { prompt_tokens: number; completion_tokens: number; total_tokens: number };

/** While a final write keeps failing: the reply is still STREAMING and its one row pending (the row settles in the reply's own final write). */
async function expectNeitherWritten(visionId: string): Promise<void> {
  const { rows: replies } = await pg.query(`select state from vision_messages where visionid = $1 and sender = 'assistant'`, [visionId]);
  expect(replies).toEqual([{ state: 'streaming' }]);
  expect(await rowsOfVision(visionId)).toMatchObject([{ state: 'pending' }]);
}

/** Once the fault is gone: the send answers a COMPLETE reply with `content`, and its one row is settled with the provider's numbers. */
async function expectBothFinal(sending: ReturnType<typeof send>, visionId: string, content: string, usage: Usage) {
  const r = await sending;
  expect(r.errors).toBeUndefined();
  expect(r.data!.sendMessage.assistantMessage).toMatchObject({ state: 'COMPLETE', content });
  const rows = await rowsOfVision(visionId);
  expect(rows).toHaveLength(1);
  expect(rows[0]).toMatchObject({ state: 'settled', prompttokens: usage.prompt_tokens, completiontokens: usage.completion_tokens, totaltokens: usage.total_tokens });
  return { r, row: rows[0]! };
}

describe('the dialog (real server)', () => {
  test('a database fault as the stream ends: the reply is still COMPLETE and its one row has the provider numbers', async () => {
    const user = newUser('meter');
    const visionId = await createVision(server, user);
    const h = held();
    const usage = { prompt_tokens: 70, completion_tokens: 4, total_tokens: 74 };
    fake.enqueue({ kind: 'stream', chunks: ['Keep', ' going', '.'], usage, hold: h.promise });
    const sending = send(server, user, visionId, 'Hello');
    await fake.waitForRequests(1);
    expect(await rowsOfVision(visionId)).toMatchObject([{ state: 'pending' }]);
    await fault('UPDATE', visionId);
    const before = await hits();
    h.release();
    await waitUntil('two failed final writes', async () => (await hits()) - before >= 2);
    await expectNeitherWritten(visionId);
    await pg.query('delete from mf_faults');

    const { r, row } = await expectBothFinal(sending, visionId, 'Keep going.', usage);
    expect(row.meta).toMatchObject({ finish: 'complete', messageid: r.data!.sendMessage.assistantMessage.id });
  });

  test("a fault on the reply's final write: its tokenscount row stays pending with it, and both settle together", async () => {
    const user = newUser('meter');
    const visionId = await createVision(server, user);
    const usage = { prompt_tokens: 60, completion_tokens: 3, total_tokens: 63 };
    fake.enqueue({ kind: 'stream', chunks: ['One', ' step.'], usage });
    await fault('REPLY', visionId);
    const before = await hits();
    const sending = send(server, user, visionId, 'Hello');
    await waitUntil('two failed final writes', async () => (await hits()) - before >= 2);
    // the model call has ended, but its numbers go with the reply: not settled while the reply cannot be written
    await expectNeitherWritten(visionId);
    await pg.query('delete from mf_faults');

    await expectBothFinal(sending, visionId, 'One step.', usage);
  });

  test('the pending row cannot be written: no model call, LLM_FAILED, the reply is FAILED, no row', async () => {
    const user = newUser('meter');
    const visionId = await createVision(server, user);
    await fault('INSERT', visionId);
    const r = await send(server, user, visionId, 'Hello');
    expect(r.errors?.[0]?.extensions?.code).toBe('LLM_FAILED');
    expect(fake.requests).toHaveLength(0);
    expect(await rowsOfVision(visionId)).toHaveLength(0);
    const replies = (await pg.query(`select state from vision_messages where visionid = $1 and sender = 'assistant'`, [visionId])).rows;
    expect(replies).toEqual([{ state: 'failed' }]);
  });

  test('a stream that ends without finish_reason is FAILED bad_response, not COMPLETE', async () => {
    const user = newUser('meter');
    const visionId = await createVision(server, user);
    fake.enqueue({ kind: 'stream', chunks: ['Cut', ' short'], finishReason: null });
    const r = await send(server, user, visionId, 'Hello');
    expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'LLM_FAILED', reason: 'bad_response' });
    const replies = (await pg.query(`select state, content, payload from vision_messages where visionid = $1 and sender = 'assistant'`, [visionId])).rows;
    expect(replies).toMatchObject([{ state: 'failed', content: 'Cut short', payload: { error: { reason: 'bad_response' } } }]);
    expect((await rowsOfVision(visionId))[0]!.meta).toMatchObject({ finish: 'failed', reason: 'bad_response' });
  });

  // needs the dialog wiring: the reply runner stores result.finishReason in the payload
  test('a length finish is COMPLETE with payload.finishReason, so a client can offer "continue"', async () => {
    const user = newUser('meter');
    const visionId = await createVision(server, user);
    fake.enqueue({ kind: 'stream', chunks: ['A long', ' answer that'], finishReason: 'length' });
    const r = await send(server, user, visionId, 'Tell me everything');
    expect(r.errors).toBeUndefined();
    expect(r.data!.sendMessage.assistantMessage).toMatchObject({ state: 'COMPLETE', content: 'A long answer that', payload: { finishReason: 'length' } });
    expect((await rowsOfVision(visionId))[0]!.meta).toMatchObject({ finish: 'complete', finishReason: 'length' });
  });

  // needs the dialog wiring: breaker.run(..., isProviderFault)
  test("one user's 400s do not open the breaker for everyone; 500s still do", async () => {
    const s = await startTestServer({ ...model(), DATABASE_URL: scratch.url, LLM_BREAKER_THRESHOLD: '2', LLM_BREAKER_COOLDOWN_MS: '600000' });
    try {
      const heavy = newUser('heavy');
      const heavyVision = await createVision(s, heavy);
      for (let i = 0; i < 5; i++) {
        fake.enqueue({ kind: 'status', status: 400 });
        const r = await send(s, heavy, heavyVision, `Too long ${i}`);
        expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'LLM_FAILED', reason: 'bad_response' });
      }
      const other = newUser('other');
      const otherVision = await createVision(s, other);
      const ok = await send(s, other, otherVision, 'Hello');
      expect(ok.errors).toBeUndefined();
      expect(fake.requests).toHaveLength(6);

      for (let i = 0; i < 12 && fake.requests.length < 6 + 12; i++) {
        fake.enqueue({ kind: 'status', status: 500 });
        const before = fake.requests.length;
        await send(s, other, otherVision, `Again ${i}`);
        if (fake.requests.length === before) break; // the breaker answered without a call
      }
      const blocked = await send(s, other, otherVision, 'Once more');
      expect(blocked.errors?.[0]?.extensions).toMatchObject({ code: 'LLM_FAILED', reason: 'upstream_error' });
      const calls = fake.requests.length;
      const rows = (await pg.query(`select count(*)::int as n from tokenscount where meta ->> 'visionid' = any($1)`, [[heavyVision, otherVision]])).rows[0].n;
      expect(rows).toBe(calls);
    } finally {
      await s.stop();
    }
  });
});

// ------------------------------------------------------------------ a real crash

// needs the dialog wiring: the stale-reply sweeper calls settlePendingCall for each reply it closes
describe('after a SIGKILL mid-stream', () => {
  let a: ServerProcess | undefined;
  let b: TestServer | undefined;
  let own: Awaited<ReturnType<typeof createScratchDatabase>> | undefined;
  afterAll(async () => {
    await a?.kill('SIGKILL');
    await b?.stop();
    await own?.drop();
  });

  test('the row written before the call survives the process and is settled by the next start with an estimate of the saved text', async () => {
    // an own database: the row must stay pending until the restarted server settles it
    own = await createScratchDatabase('vp_meter_kill');
    const env = { ...model(), DATABASE_URL: own.url, LLM_TIMEOUT_MS: '20000', REPLY_STALE_MS: '1000' };
    a = await spawnServer(env);
    const user = newUser('kill');
    const created = await postGraphQL<any>(`${a.url}/graphql`, print(CreateVisionDocument), { input: { title: 'Crash' } }, { user });
    const visionId = created.data.createVision.id as string;
    const h = held();
    fake.enqueue({ kind: 'stream', chunks: ['Saved part of the reply', ' never sent'], hold: h.promise });
    void postGraphQL(`${a.url}/graphql`, print(SendMessageDocument), { input: { visionId, content: 'go' } }, { user }).catch(() => undefined);
    const ownPg = new PgClient({ connectionString: own.url });
    await ownPg.connect();
    try {
      const reply = await waitUntil('the first chunk saved', async () => {
        const { rows } = await ownPg.query(`select id, content from vision_messages where visionid = $1 and sender = 'assistant' and content <> ''`, [visionId]);
        return rows[0] as { id: string; content: string } | undefined;
      });
      await a.kill('SIGKILL');
      a = undefined;
      const [pending] = (await ownPg.query(`select * from tokenscount where meta ->> 'visionid' = $1`, [visionId])).rows;
      expect(pending).toMatchObject({ state: 'pending', completiontokens: 0 });
      expect(pending.meta).toMatchObject({ messageid: reply.id, finish: 'pending' });

      b = await startTestServer({ ...env, REPLY_STALE_MS: '1000' });
      const settled = await waitUntil('the row settled by the restarted server', async () => {
        const { rows } = await ownPg.query(`select * from tokenscount where meta ->> 'visionid' = $1 and state = 'settled'`, [visionId]);
        return rows[0] as Row | undefined;
      });
      expect(settled.meta).toMatchObject({ messageid: reply.id, finish: 'failed', reason: 'interrupted', estimated: true });
      expect(settled.prompttokens).toBe(pending.prompttokens);
      expect(settled.completiontokens).toBe(countTokens(reply.content));
      expect(settled.totaltokens).toBe(pending.prompttokens + countTokens(reply.content));
      // priced from the estimates at the default price of gpt-4.1 (2 and 8 USD per million tokens)
      expect(Number((settled as unknown as { costmicrousd: string }).costmicrousd)).toBe(settled.prompttokens * 2 + settled.completiontokens * 8);
      expect((await ownPg.query(`select count(*)::int as n from tokenscount`)).rows[0].n).toBe(1);
      expect(fake.requests).toHaveLength(1);
    } finally {
      await ownPg.end();
    }
  });
});
