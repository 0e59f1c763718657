/**
 * GraphQL over Server-Sent Events (src/graphql/sse.ts) on /graphql/stream, driven by the real
 * graphql-sse client (both its modes) against the real server, with the fake OpenAI server
 * controlling the reply chunk by chunk: the same identity, limits, ownership rules, errors and
 * resume semantics as over WebSocket.
 */
import { print } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { createClient, NetworkError, type Client } from 'graphql-sse';
import {
  CreateVisionDocument,
  GetVisionDocument,
  MessageAddedDocument,
  ReplyDeltasDocument,
  ReplyDeltasFromDocument,
  SendMessageDocument,
  type ReplyDeltasFromSubscription,
} from './generated/graphql';
import { startFakeOpenAI, type FakeOpenAI } from './support/fake-openai';
import { newUser, startTestServer, type TestServer } from './support/server';
import { sleep, waitUntil } from './support/wait';

let fake: FakeOpenAI;
let server: TestServer;
let env: Record<string, string>;
const clients: Client[] = [];
const releases: (() => void)[] = [];

beforeAll(async () => {
  fake = await startFakeOpenAI();
  env = {
    OPENAI_API_KEY: 'test-key',
    OPENAI_BASE_URL: fake.baseURL,
    LLM_MAX_RETRIES: '0',
    LLM_TIMEOUT_MS: '5000',
    REPLY_FLUSH_MS: '100',
    REPLY_STALE_MS: '3000',
    SUMMARIES: 'false',
  };
  server = await startTestServer(env);
});

beforeEach(() => fake.reset());

afterEach(async () => {
  for (const r of releases.splice(0)) r();
  for (const c of clients.splice(0)) c.dispose();
});

afterAll(async () => {
  for (const r of releases.splice(0)) r();
  for (const c of clients.splice(0)) c.dispose();
  await server?.stop();
  await fake?.close();
});

// ------------------------------------------------------------------ helpers

const streamUrl = (s: { url: string } = server) => `${s.url}/graphql/stream`;

function held(): { promise: Promise<void>; release(): void } {
  let release!: () => void;
  const promise = new Promise<void>((r) => (release = r));
  releases.push(release);
  return { promise, release };
}

/** A real graphql-sse client; no retries, so that a refusal is the test's to see. */
function sse(user?: string, opts: { single?: boolean; server?: { url: string }; headers?: Record<string, string> } = {}): Client {
  const c = createClient({
    url: streamUrl(opts.server),
    headers: { ...(user ? { 'x-user-id': user } : {}), ...opts.headers },
    singleConnection: opts.single ?? false,
    retryAttempts: 0,
    onNonLazyError: () => undefined,
    // a refusal's body is read into memory, so that the test can read it after the client gave up
    fetchFn: async (url: string, init?: RequestInit) => {
      const res = await fetch(url, init);
      if (res.ok) return res;
      return new Response(await res.text(), { status: res.status, statusText: res.statusText, headers: res.headers });
    },
  });
  clients.push(c);
  return c;
}

interface Collected<T> {
  events: T[];
  errors: any[];
  /** Resolves when the stream answered 200 (distinct connections mode: the subscription is in place). */
  connected: Promise<void>;
  /** Resolves when the operation completes or fails. */
  ended: Promise<void>;
  waitFor(n: number, timeoutMs?: number): Promise<T[]>;
  /** Unsubscribes; whatever the client still had in flight is not "seen". */
  stop(): void;
}

function collect<T, V>(client: Client, doc: TypedDocumentNode<T, V> | string, variables?: V): Collected<T> {
  const events: T[] = [];
  const errors: any[] = [];
  let stopped = false;
  let onConnected!: () => void;
  let onEnded!: () => void;
  const connected = new Promise<void>((r) => (onConnected = r));
  const ended = new Promise<void>((r) => (onEnded = r));
  const dispose = client.subscribe<T>(
    { query: typeof doc === 'string' ? doc : print(doc), variables: variables as Record<string, unknown> | undefined },
    {
      next(r) {
        if (stopped) return;
        if (r.errors) errors.push(...r.errors);
        if (r.data) events.push(r.data as T);
      },
      error(e) {
        errors.push(e);
        onEnded();
      },
      complete: () => onEnded(),
    },
    { connected: () => onConnected() },
  );
  return {
    events,
    errors,
    connected,
    ended,
    waitFor: (n, timeoutMs = 10_000) =>
      waitUntil(`${n} events (got ${events.length}, errors ${JSON.stringify(errors)})`, () => events.length >= n && events, timeoutMs, 10),
    stop() {
      stopped = true;
      dispose();
    },
  };
}

/** The refusal a NetworkError carries: HTTP status and the contract's JSON body. */
async function refusalOf(err: unknown): Promise<{ status: number; code: string; body: any }> {
  expect(err).toBeInstanceOf(NetworkError);
  const res = (err as NetworkError<Response>).response!;
  const body = (await res.json()) as any;
  return { status: res.status, code: body.errors?.[0]?.extensions?.code, body };
}

async function createVision(user: string, s: TestServer = server): Promise<string> {
  const r = await s.gql(CreateVisionDocument, { input: { title: 'Over SSE' } }, { user });
  expect(r.errors).toBeUndefined();
  return r.data!.createVision.id;
}

function send(user: string, visionId: string, content: string, s: TestServer = server) {
  return s.gql(SendMessageDocument, { input: { visionId, content } }, { user });
}

type Delta = ReplyDeltasFromSubscription['replyDelta'];
const deltas = (events: { replyDelta: Delta }[]): Delta[] => events.map((e) => e.replyDelta);
const words = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}${i} `);

async function storedContent(id: string): Promise<string> {
  const [row] = await server.sql<{ content: string }>(`select content from vision_messages where id = ?`, [id]);
  return row!.content;
}

/** Every chunk once, in order: seq 1..n+1, the deltas making the stored reply, one done at the end. */
async function expectWholeReply(all: Delta[], replyId: string, chunks: number): Promise<void> {
  expect(all.every((d) => d.replyId === replyId)).toBe(true);
  expect(all.map((d) => d.seq)).toEqual(Array.from({ length: chunks + 1 }, (_, i) => i + 1));
  expect(all.map((d) => d.done)).toEqual([...Array(chunks).fill(false), true]);
  expect(all[all.length - 1]!.state).toBe('COMPLETE');
  expect(all.map((d) => d.delta).join('')).toBe(await storedContent(replyId));
}

// ------------------------------------------------------------------ streaming and resume

describe('replyDelta over SSE', () => {
  test('streams seq 1..n whose deltas make the stored reply, then done (distinct connections mode)', async () => {
    const user = newUser('sse');
    const visionId = await createVision(user);
    const sub = collect(sse(user), ReplyDeltasDocument, { visionId });
    await sub.connected;
    const chunks = ['Begin', ' with', ' ten', ' minutes', ' a day.'];
    fake.enqueue({ kind: 'stream', chunks, chunkDelayMs: 10 });
    const pair = (await send(user, visionId, 'How do I begin?')).data!.sendMessage;
    await sub.waitFor(chunks.length + 1);
    await sleep(200);
    expect(sub.events).toHaveLength(chunks.length + 1);
    await expectWholeReply(deltas(sub.events), pair.assistantMessage.id, chunks.length);
    expect(sub.errors).toEqual([]);
  });

  test('a stream dropped mid-reply and resumed with replyId and afterSeq: every chunk exactly once', async () => {
    const user = newUser('sseResume');
    const visionId = await createVision(user);
    const chunks = words(16, 'w');
    fake.enqueue({ kind: 'stream', chunks, chunkDelayMs: 40 });
    const first = collect(sse(user), ReplyDeltasDocument, { visionId });
    await first.connected;
    const sending = send(user, visionId, 'A long answer, please');
    await first.waitFor(3);
    first.stop(); // the stream closes
    const seen = deltas(first.events);
    const last = seen[seen.length - 1]!;
    await sleep(200); // chunks go on while the client is away
    const second = collect(sse(user), ReplyDeltasFromDocument, { visionId, replyId: last.replyId, afterSeq: last.seq });
    await waitUntil('the done event', () => second.events.some((e) => e.replyDelta.done));
    const reply = (await sending).data!.sendMessage.assistantMessage;
    await sleep(100);
    const resumed = deltas(second.events);
    expect(resumed[0]!.seq).toBe(last.seq + 1);
    await expectWholeReply([...seen, ...resumed], reply.id, chunks.length);
    expect(second.errors).toEqual([]);
  });

  test("the graphql-sse client's own retry after the network drops resumes exactly, when the request's variables follow the stream", async () => {
    const user = newUser('sseRetry');
    const visionId = await createVision(user);
    const chunks = words(16, 'r');
    fake.enqueue({ kind: 'stream', chunks, chunkDelayMs: 40 });
    // graphql-sse sends the request again on every retry: the variables it sends are the ones it holds then
    const client = createClient({ url: streamUrl(), headers: { 'x-user-id': user }, retryAttempts: 5, retry: () => sleep(100) });
    clients.push(client);
    const variables: { visionId: string; replyId?: string; afterSeq?: number } = { visionId };
    const got: Delta[] = [];
    const errors: unknown[] = [];
    let connects = 0;
    client.subscribe<ReplyDeltasFromSubscription>(
      { query: print(ReplyDeltasFromDocument), variables },
      {
        next(r) {
          if (r.errors) errors.push(...r.errors);
          const d = r.data?.replyDelta;
          if (!d) return;
          got.push(d);
          variables.replyId = d.replyId;
          variables.afterSeq = d.seq;
        },
        error: (e) => errors.push(e),
        complete: () => undefined,
      },
      { connected: () => connects++ },
    );
    await waitUntil('the stream', () => connects === 1);
    const sending = send(user, visionId, 'Keep going').catch(() => undefined);
    await waitUntil('3 chunks', () => got.length >= 3);
    server.server.app.server.closeAllConnections(); // every connection drops at once
    await waitUntil('the done event', () => got.some((d) => d.done));
    await sending;
    expect(connects).toBeGreaterThanOrEqual(2);
    const replyId = got[0]!.replyId;
    await waitUntil('the stored reply', async () => (await server.sql(`select state from vision_messages where id = ?`, [replyId]))[0]?.state === 'complete');
    await expectWholeReply(got, replyId, chunks.length);
    expect(errors).toEqual([]);
  });

  test('the single connection mode: a dropped connection resumed with afterSeq alone misses and repeats nothing', async () => {
    const user = newUser('sseSingle');
    const visionId = await createVision(user);
    const chunks = words(14, 's');
    fake.enqueue({ kind: 'stream', chunks, chunkDelayMs: 40 });
    const client = sse(user, { single: true });
    const first = collect(client, ReplyDeltasDocument, { visionId });
    await sleep(300); // the operation is started by its own POST after the stream opens
    const sending = send(user, visionId, 'Tell me everything');
    await first.waitFor(4);
    first.stop();
    client.dispose(); // the whole connection goes
    const seen = deltas(first.events);
    await sleep(200);
    const second = collect(sse(user, { single: true }), ReplyDeltasDocument, { visionId, afterSeq: seen[seen.length - 1]!.seq });
    await waitUntil('the done event', () => second.events.some((e) => e.replyDelta.done));
    const reply = (await sending).data!.sendMessage.assistantMessage;
    await expectWholeReply([...seen, ...deltas(second.events)], reply.id, chunks.length);
    expect(second.errors).toEqual([]);
  });
});

describe('messageAdded over SSE', () => {
  test('the owner gets the user message at once and the final reply; nobody else gets anything', async () => {
    const owner = newUser('sseMsg');
    const other = newUser('sseOther');
    const mine = await createVision(owner);
    const theirs = await createVision(other);
    const subMine = collect(sse(owner), MessageAddedDocument, { visionId: mine });
    const subTheirs = collect(sse(other), MessageAddedDocument, { visionId: theirs });
    await Promise.all([subMine.connected, subTheirs.connected]);
    const h = held();
    fake.enqueue({ kind: 'stream', chunks: ['Step', ' one'], hold: h.promise });
    const sending = send(owner, mine, ' First message ');
    await subMine.waitFor(1);
    expect(subMine.events[0]!.messageAdded).toMatchObject({ visionId: mine, sender: 'USER', state: 'COMPLETE', content: 'First message' });
    h.release();
    const pair = (await sending).data!.sendMessage;
    await subMine.waitFor(2);
    await sleep(200);
    expect(subMine.events.map((e) => [e.messageAdded.id, e.messageAdded.sender, e.messageAdded.content])).toEqual([
      [pair.userMessage.id, 'USER', 'First message'],
      [pair.assistantMessage.id, 'ASSISTANT', 'Step one'],
    ]);
    expect(subTheirs.events).toEqual([]);
    expect([...subMine.errors, ...subTheirs.errors]).toEqual([]);
  });

  test('after a drop, a new stream gets the live messages only (messageAdded has no resume arguments: Vision.messages has the rest)', async () => {
    const user = newUser('sseBack');
    const visionId = await createVision(user);
    const first = collect(sse(user), MessageAddedDocument, { visionId });
    await first.connected;
    first.stop();
    const missed = (await send(user, visionId, 'while away')).data!.sendMessage;
    const again = collect(sse(user), MessageAddedDocument, { visionId });
    await again.connected;
    const live = (await send(user, visionId, 'back again')).data!.sendMessage;
    await again.waitFor(2);
    expect(again.events.map((e) => e.messageAdded.id)).toEqual([live.userMessage.id, live.assistantMessage.id]);
    expect(first.events).toEqual([]);
    expect(missed.assistantMessage.state).toBe('COMPLETE');
  });
});

// ------------------------------------------------------------------ identity, ownership, documents

describe('the rules of the WebSocket', () => {
  test("someone else's vision is NOT_FOUND, for both subscriptions and in both modes", async () => {
    const owner = newUser('sseOwner');
    const visionId = await createVision(owner);
    const thief = newUser('sseThief');
    for (const single of [false, true]) {
      const client = sse(thief, { single });
      for (const sub of [collect(client, MessageAddedDocument, { visionId }), collect(client, ReplyDeltasDocument, { visionId, afterSeq: 0 })]) {
        await sub.ended;
        expect(sub.events).toEqual([]);
        expect(sub.errors.map((e) => e?.extensions?.code)).toEqual(['NOT_FOUND']);
      }
    }
  });

  test('no identity, or a bad one, is refused with 401 UNAUTHENTICATED before any stream', async () => {
    const visionId = await createVision(newUser('sseAnonTarget'));
    for (const single of [false, true]) {
      const sub = collect(sse(undefined, { single }), MessageAddedDocument, { visionId });
      await sub.ended;
      expect(sub.events).toEqual([]);
      const r = await refusalOf(sub.errors[0]);
      expect(r.status).toBe(401);
      expect(r.code).toBe('UNAUTHENTICATED');
    }
    const bad = collect(sse(undefined, { headers: { authorization: 'Basic abc' } }), MessageAddedDocument, { visionId });
    await bad.ended;
    expect(await refusalOf(bad.errors[0])).toMatchObject({ status: 401, code: 'UNAUTHENTICATED' });
    const raw = await fetch(streamUrl(), {
      method: 'POST',
      headers: { accept: 'text/event-stream', 'content-type': 'application/json' },
      body: JSON.stringify({ query: print(MessageAddedDocument), variables: { visionId } }),
    });
    expect(raw.status).toBe(401);
    expect(raw.headers.get('content-type')).toMatch(/^application\/json/);
    expect(raw.headers.get('www-authenticate')).toBe('Bearer');
    expect(await raw.json()).toEqual({ errors: [{ message: 'A valid identity is required', extensions: { code: 'UNAUTHENTICATED' } }] });
  });

  test('documents get the limits of /graphql: graphql-armor rules and GRAPHQL_MAX_TOKENS (BAD_USER_INPUT)', async () => {
    const user = newUser('sseArmor');
    const visionId = await createVision(user);
    const aliases = Array.from({ length: 20 }, (_, i) => `a${i}: id`).join(' ');
    const tooManyAliases = collect(sse(user), `subscription ($visionId: ID!) { messageAdded(visionId: $visionId) { ${aliases} } }`, { visionId });
    const fields = Array.from({ length: 2100 }, () => 'id').join(' ');
    const tooManyTokens = collect(sse(user), `subscription ($visionId: ID!) { messageAdded(visionId: $visionId) { ${fields} } }`, { visionId });
    const unknownField = collect(sse(user), 'subscription ($visionId: ID!) { messageAdded(visionId: $visionId) { nope } }', { visionId });
    await Promise.all([tooManyAliases.ended, tooManyTokens.ended, unknownField.ended]);
    expect(tooManyAliases.errors.map((e) => [e.extensions.code, e.extensions.reason])).toEqual([['BAD_USER_INPUT', 'GRAPHQL_VALIDATION_FAILED']]);
    expect(tooManyAliases.errors[0].message).toMatch(/alias/i);
    expect(tooManyTokens.errors.map((e) => [e.extensions.code, e.extensions.reason])).toEqual([['BAD_USER_INPUT', 'GRAPHQL_PARSE_FAILED']]);
    expect(tooManyTokens.errors[0].message).toMatch(/more th\w+ 2000 tokens/);
    expect(unknownField.errors.map((e) => e.extensions.code)).toEqual(['BAD_USER_INPUT']);
    for (const s of [tooManyAliases, tooManyTokens, unknownField]) expect(s.events).toEqual([]);
  });

  test('queries run over SSE too, with the same context', async () => {
    const user = newUser('sseQuery');
    const visionId = await createVision(user);
    const q = collect(sse(user), GetVisionDocument, { id: visionId });
    await q.ended;
    expect(q.errors).toEqual([]);
    expect(q.events).toEqual([{ vision: expect.objectContaining({ id: visionId, title: 'Over SSE', status: 'ACTIVE' }) }]);
    // someone else's vision: exactly what /graphql answers
    const strangerId = newUser('sseQ2');
    const stranger = collect(sse(strangerId), GetVisionDocument, { id: visionId });
    await stranger.ended;
    const overHttp = await server.gql(GetVisionDocument, { id: visionId }, { user: strangerId });
    expect(stranger.events).toEqual([overHttp.data]);
    expect(stranger.errors.map((e) => e.extensions.code)).toEqual((overHttp.errors ?? []).map((e) => e.extensions?.code));
  });

  test("a registered stream is its owner's only: another user's token is an unknown stream", async () => {
    const owner = newUser('sseTok');
    const put = await fetch(streamUrl(), { method: 'PUT', headers: { 'x-user-id': owner } });
    expect(put.status).toBe(201);
    const token = await put.text();
    const stolen = await fetch(streamUrl(), { headers: { accept: 'text/event-stream', 'x-user-id': newUser('sseTok2'), 'x-graphql-event-stream-token': token } });
    expect(stolen.status).toBe(404);
    expect(((await stolen.json()) as any).errors[0].extensions).toEqual({ code: 'BAD_USER_INPUT', reason: 'BAD_REQUEST' });
    const ctrl = new AbortController();
    const mine = await fetch(streamUrl(), { headers: { accept: 'text/event-stream', 'x-user-id': owner, 'x-graphql-event-stream-token': token }, signal: ctrl.signal });
    expect(mine.status).toBe(200);
    expect(mine.headers.get('content-type')).toMatch(/^text\/event-stream/);
    ctrl.abort();
  });

  test("graphql-sse's own protocol refusals carry the contract's code", async () => {
    const user = newUser('sseProto');
    const noQuery = await fetch(streamUrl(), { method: 'POST', headers: { accept: 'text/event-stream', 'content-type': 'application/json', 'x-user-id': user }, body: '{}' });
    expect(noQuery.status).toBe(400);
    expect(((await noQuery.json()) as any).errors[0]).toEqual({ message: 'Missing query', extensions: { code: 'BAD_USER_INPUT', reason: 'BAD_REQUEST' } });
    const notAStream = await fetch(streamUrl(), { headers: { 'x-user-id': user } });
    expect(notAStream.status).toBe(404);
    expect(((await notAStream.json()) as any).errors[0].extensions.code).toBe('BAD_USER_INPUT');
  });

  test('a mutation over GET is refused with 405 (Allow: POST) and BAD_USER_INPUT, and runs nothing', async () => {
    const user = newUser('sseGetMutation');
    const url = new URL(streamUrl());
    url.searchParams.set('query', 'mutation { createVision(input: { title: "over GET" }) { id } }');
    const res = await fetch(url, { headers: { accept: 'text/event-stream', 'x-user-id': user } });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect(((await res.json()) as any).errors[0]).toEqual({ message: 'Cannot perform mutations over GET', extensions: { code: 'BAD_USER_INPUT', reason: 'BAD_REQUEST' } });
    const [row] = await server.sql(`select count(*)::int as n from visions where userid = ?`, [user]);
    expect(row!.n).toBe(0);
  });
});

// ------------------------------------------------------------------ limits, configuration, shutdown

describe('limits', () => {
  let limited: TestServer;
  beforeAll(async () => {
    limited = await startTestServer({ ...env, MAX_WS_PER_USER: '2', MAX_SUBSCRIPTIONS_PER_CONNECTION: '2', WS_INIT_TIMEOUT_MS: '300' });
  });
  afterAll(() => limited?.stop());

  test('MAX_WS_PER_USER open streams per user: the next is refused with 429 RATE_LIMITED; a closed one frees its slot', async () => {
    const user = newUser('sseCap');
    const visionId = await createVision(user, limited);
    const open = [collect(sse(user, { server: limited }), MessageAddedDocument, { visionId }), collect(sse(user, { server: limited }), ReplyDeltasDocument, { visionId })];
    await Promise.all(open.map((s) => s.connected));
    const third = collect(sse(user, { server: limited }), MessageAddedDocument, { visionId });
    await third.ended;
    const r = await refusalOf(third.errors[0]);
    expect(r).toMatchObject({ status: 429, code: 'RATE_LIMITED' });
    expect(r.body.errors[0].message).toMatch(/at most 2/);
    // a single connection stream counts from its PUT
    const put = await fetch(streamUrl(limited), { method: 'PUT', headers: { 'x-user-id': user } });
    expect(put.status).toBe(429);
    // other users are not affected
    const otherUser = newUser('sseCapOther');
    const other = collect(sse(otherUser, { server: limited }), MessageAddedDocument, { visionId: await createVision(otherUser, limited) });
    await other.connected;
    open[0]!.stop();
    const again = await waitUntil('a free slot', async () => {
      const s = collect(sse(user, { server: limited }), MessageAddedDocument, { visionId });
      const won = await Promise.race([s.connected.then(() => true), s.ended.then(() => false)]);
      return won ? s : undefined;
    });
    expect(again.errors).toEqual([]);
  });

  test('MAX_SUBSCRIPTIONS_PER_CONNECTION operations per single connection stream: the next is RATE_LIMITED', async () => {
    const user = newUser('sseOps');
    const visionId = await createVision(user, limited);
    const client = sse(user, { single: true, server: limited });
    const subs = [collect(client, MessageAddedDocument, { visionId }), collect(client, ReplyDeltasDocument, { visionId })];
    await sleep(300);
    const third = collect(client, MessageAddedDocument, { visionId });
    await third.ended;
    expect(third.errors.map((e) => e.extensions.code)).toEqual(['RATE_LIMITED']);
    // a completed operation frees its place on the stream
    subs[0]!.stop();
    await sleep(200);
    const fourth = collect(client, MessageAddedDocument, { visionId });
    await sleep(300);
    const pair = (await send(user, visionId, 'counted', limited)).data!.sendMessage;
    await fourth.waitFor(2);
    expect(fourth.events.map((e) => e.messageAdded.id)).toEqual([pair.userMessage.id, pair.assistantMessage.id]);
    expect(fourth.errors).toEqual([]);
  });

  test('a registered stream not opened within WS_INIT_TIMEOUT_MS is dropped and frees its slot', async () => {
    const user = newUser('sseIdle');
    const tokens: string[] = [];
    for (let i = 0; i < 2; i++) {
      const put = await fetch(streamUrl(limited), { method: 'PUT', headers: { 'x-user-id': user } });
      expect(put.status).toBe(201);
      tokens.push(await put.text());
    }
    expect((await fetch(streamUrl(limited), { method: 'PUT', headers: { 'x-user-id': user } })).status).toBe(429);
    await sleep(600);
    const late = await fetch(streamUrl(limited), { headers: { accept: 'text/event-stream', 'x-user-id': user, 'x-graphql-event-stream-token': tokens[0]! } });
    expect(late.status).toBe(404);
    await late.body?.cancel();
    const put = await fetch(streamUrl(limited), { method: 'PUT', headers: { 'x-user-id': user } });
    expect(put.status).toBe(201);
  });
});

test('RATE_LIMIT_OPS_PER_SECOND counts SSE operations as it counts WebSocket ones: RATE_LIMITED in the stream', async () => {
  const strict = await startTestServer({ ...env, RATE_LIMIT_OPS_PER_SECOND: '3' });
  try {
    const user = newUser('sseOpsRate');
    const visionId = await createVision(user, strict);
    await sleep(1100); // the createVision above was one of this second's operations
    const subs = Array.from({ length: 5 }, () => collect(sse(user, { server: strict }), MessageAddedDocument, { visionId }));
    await waitUntil('two refusals', () => subs.filter((s) => s.errors.length).length >= 2);
    await Promise.all(subs.map((s) => s.connected));
    await sleep(200);
    expect(subs.flatMap((s) => s.errors).map((e) => e.extensions.code)).toEqual(['RATE_LIMITED', 'RATE_LIMITED']);
  } finally {
    await strict.stop();
  }
});

describe('configuration and shutdown', () => {
  test('SSE=false: there is no /graphql/stream route', async () => {
    const off = await startTestServer({ ...env, SSE: 'false' });
    try {
      const user = newUser('sseOff');
      const res = await fetch(streamUrl(off), { method: 'POST', headers: { accept: 'text/event-stream', 'content-type': 'application/json', 'x-user-id': user }, body: '{"query":"{ __typename }"}' });
      expect(res.status).toBe(404);
      await res.body?.cancel();
      expect((await off.gql('{ __typename }', undefined, { user })).data).toEqual({ __typename: 'Query' });
    } finally {
      await off.stop();
    }
  });

  test('a quiet stream outlives the idle timeout of HTTP connections (HTTP_REQUEST_TIMEOUT_MS under the 12 s keep-alive)', async () => {
    const short = await startTestServer({ ...env, HTTP_REQUEST_TIMEOUT_MS: '1000' });
    try {
      const user = newUser('sseIdleSocket');
      const quiet = collect(sse(user, { server: short }), MessageAddedDocument, { visionId: await createVision(user, short) });
      await quiet.connected;
      await sleep(2500);
      expect(quiet.errors).toEqual([]);
      quiet.stop();
    } finally {
      await short.stop();
    }
  });

  test("stop() ends open event streams (both modes) instead of waiting for Fastify's 5 s cut", async () => {
    const own = await startTestServer(env);
    let stopped = false;
    try {
      const user = newUser('sseStop');
      const visionId = await createVision(user, own);
      const distinct = collect(sse(user, { server: own }), ReplyDeltasDocument, { visionId });
      const single = collect(sse(user, { server: own, single: true }), MessageAddedDocument, { visionId });
      await distinct.connected;
      await sleep(300);
      const t0 = Date.now();
      await own.stop();
      stopped = true;
      expect(Date.now() - t0).toBeLessThan(3000);
      await Promise.all([distinct.ended, single.ended]);
      // graphql-sse clients take the end of a stream with running operations for a network error (and retry)
      expect(distinct.errors[0]).toBeInstanceOf(NetworkError);
      expect(single.errors[0]).toBeInstanceOf(NetworkError);
    } finally {
      if (!stopped) await own.stop();
    }
  });
});
