/**
 * The document tool (issue 13): the model is offered `create_document`; a streamed call becomes a
 * FILE_RESULT reply whose file downloads with identical bytes through `File.url`. Bad arguments
 * fail the reply with `bad_response` and store nothing; stop, statuses, retry and idempotency
 * work as for text replies. The real server and PostgreSQL, the official SDK against a fake model.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client as WsClient } from 'graphql-ws';
import { CreateVisionDocument, ReplyDeltasDocument, RetryReplyDocument, SendMessageDocument, StopReplyDocument } from './generated/graphql';
import { startFakeOpenAI, chunk, type FakeOpenAI } from './support/fake-openai';
import { errorCode, newUser, startTestServer, type TestServer } from './support/server';
import { waitUntil } from './support/wait';
import { collect, wsClient } from './support/ws';

let fake: FakeOpenAI;
let server: TestServer;
let dir: string;
const clients: WsClient[] = [];

const MAX_FILE_BYTES = 2000;

beforeAll(async () => {
  fake = await startFakeOpenAI();
  dir = await mkdtemp(join(tmpdir(), 'vp-docs-'));
  server = await startTestServer({
    OPENAI_API_KEY: 'test-key',
    OPENAI_BASE_URL: fake.baseURL,
    LLM_MAX_RETRIES: '0',
    LLM_TIMEOUT_MS: '5000',
    SUMMARIES: 'false',
    FILE_DIR: dir,
    MAX_FILE_BYTES: String(MAX_FILE_BYTES),
  });
});

beforeEach(() => fake.reset());

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.dispose()));
});

afterAll(async () => {
  await server?.stop();
  await fake?.close();
  await rm(dir, { recursive: true, force: true });
});

const MESSAGE = `query Msg($id: ID!) { vision(id: $id) { messages(last: 1) { edges { node { id type state content payload file { id filename mime size url } } } } } }`;

async function createVision(user: string): Promise<string> {
  const r = await server.gql(CreateVisionDocument, { input: { title: 'Пробежать марафон' } }, { user });
  return r.data!.createVision.id;
}

/** The arguments of a create_document call, as the model streams them (JSON cut into pieces). */
function argumentChunks(args: Record<string, unknown>, size = 7): string[] {
  return chunk(JSON.stringify(args), size);
}

async function settled(user: string, visionId: string): Promise<any> {
  let node: any;
  await waitUntil('the reply is settled', async () => {
    const r = await server.gql<any, any>(MESSAGE, { id: visionId }, { user });
    node = r.data?.vision?.messages.edges[0]?.node;
    return node && node.state !== 'STREAMING';
  }, 10_000, 30);
  return node;
}

async function storedObjects(): Promise<string[]> {
  const out: string[] = [];
  for await (const o of server.server.files.storage.list()) out.push(o.key);
  return out;
}

async function fileRows(visionId: string): Promise<any[]> {
  return server.sql(`select id, filename, mime, size, storagepath from files where visionid = ?`, [visionId]);
}

async function chatRowsOf(visionId: string): Promise<any[]> {
  return server.sql(`select meta from tokenscount where meta->>'visionid' = ? and meta->>'purpose' = 'reply'`, [visionId]);
}

describe('create_document', () => {
  test('a streamed tool call becomes a FILE_RESULT whose file downloads with identical bytes; one call, one tokenscount row', async () => {
    const user = newUser();
    const visionId = await createVision(user);
    const content = '# План\n\n1. Бег 3 км — вторник\n2. Бег 5 км — суббота\n\n«Кавычки», emoji 🏃 и \\ обратный слэш\n';
    fake.enqueue({ kind: 'stream', chunks: [], toolCall: { argumentChunks: argumentChunks({ filename: 'план бега.md', mime: 'text/markdown', content, caption: 'Вот план на неделю.' }) }, chunkDelayMs: 5 });

    const ws = wsClient(server.url, { user });
    clients.push(ws);
    // afterSeq 0: whatever streamed before the subscription was in place is replayed first
    const deltas = collect(ws, ReplyDeltasDocument, { visionId, afterSeq: 0 });
    const sent = await server.gql(SendMessageDocument, { input: { visionId, content: 'Сделай мне файл с планом бега' } }, { user });
    expect(sent.errors).toBeUndefined();

    const reply = await settled(user, visionId);
    expect(reply).toMatchObject({ type: 'FILE_RESULT', state: 'COMPLETE', content: 'Вот план на неделю.' });
    expect(reply.payload).toEqual({ fileid: reply.file.id, filename: 'план бега.md' });
    expect(reply.file).toMatchObject({ filename: 'план бега.md', mime: 'text/markdown', size: Buffer.byteLength(content) });

    const res = await fetch(reply.file.url);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(content, 'utf8'))).toBe(true);

    // the model was offered the tool, and the call was metered once
    const chat = fake.requests.filter((r) => r.path.endsWith('/chat/completions'));
    expect(chat).toHaveLength(1);
    expect(chat[0]!.body.tools.map((t: any) => t.function.name)).toEqual(['create_document']);
    const rows = await chatRowsOf(visionId);
    expect(rows).toHaveLength(1);
    expect(rows[0].meta).toMatchObject({ finish: 'complete', finishReason: 'tool_calls', messageid: reply.id });

    // replyDelta carries the caption, and the deltas add up to the stored content
    const events = (await deltas.waitFor(2)).map((e: any) => e.replyDelta);
    const text = events.filter((e: any) => !e.done).map((e: any) => e.delta).join('');
    expect(text).toBe(reply.content);
    expect(events.at(-1)).toMatchObject({ done: true, state: 'COMPLETE' });
  });

  test('text before the call stays, the caption follows it; the next request shows the document by name', async () => {
    const user = newUser();
    const visionId = await createVision(user);
    fake.enqueue({ kind: 'stream', chunks: ['Готово', ', держите:'], toolCall: { argumentChunks: argumentChunks({ filename: 'steps.csv', mime: 'text/csv', content: 'day,km\n1,3\n2,5\n', caption: 'Таблица шагов.' }) } });
    await server.gql(SendMessageDocument, { input: { visionId, content: 'Сделай таблицу' } }, { user });
    const reply = await settled(user, visionId);
    expect(reply).toMatchObject({ type: 'FILE_RESULT', state: 'COMPLETE', content: 'Готово, держите:\n\nТаблица шагов.' });
    expect(reply.file.mime).toBe('text/csv');

    await server.gql(SendMessageDocument, { input: { visionId, content: 'Спасибо!' } }, { user });
    await settled(user, visionId);
    const last = fake.requests.filter((r) => r.path.endsWith('/chat/completions')).at(-1)!;
    const assistant = last.body.messages.filter((m: any) => m.role === 'assistant').at(-1);
    expect(assistant.content).toBe('Готово, держите:\n\nТаблица шагов.\n\n[document attached: steps.csv]');
  });

  test('a dangerous filename is sanitised: never a path, no NUL, bounded length', async () => {
    const user = newUser();
    const visionId = await createVision(user);
    fake.enqueue({ kind: 'stream', chunks: [], toolCall: { argumentChunks: argumentChunks({ filename: '../../etc/pass\u0000wd', mime: 'text/plain', content: 'x', caption: 'ok' }) } });
    await server.gql(SendMessageDocument, { input: { visionId, content: 'файл' } }, { user });
    const reply = await settled(user, visionId);
    expect(reply.state).toBe('COMPLETE');
    expect(reply.file.filename).not.toMatch(/[/\\\u0000]/);
    expect(reply.file.filename.startsWith('.')).toBe(false);
    const [row] = await fileRows(visionId);
    expect(row.storagepath).toBe(`files/${row.id}`);

    fake.enqueue({ kind: 'stream', chunks: [], toolCall: { argumentChunks: argumentChunks({ filename: 'я'.repeat(300) + '.md', mime: 'text/markdown', content: 'x', caption: 'ok' }) } });
    await server.gql(SendMessageDocument, { input: { visionId, content: 'ещё файл' } }, { user });
    const long = await settled(user, visionId);
    expect(long.state).toBe('COMPLETE');
    expect(Buffer.byteLength(long.file.filename)).toBeLessThanOrEqual(255);
    expect(long.file.filename.endsWith('.md')).toBe(true);
  });

  test.each([
    ['an unknown mime', { argumentChunks: argumentChunks({ filename: 'a.exe', mime: 'application/x-msdownload', content: 'MZ', caption: 'x' }) }],
    ['a document over MAX_FILE_BYTES', { argumentChunks: argumentChunks({ filename: 'big.txt', mime: 'text/plain', content: 'ж'.repeat(MAX_FILE_BYTES), caption: 'x' }) }],
    ['arguments that are not JSON', { argumentChunks: ['{"filename": "a.md", "mime": "text/markdown", "content": "#'] }],
    ['a JSON document that is not JSON', { argumentChunks: argumentChunks({ filename: 'd.json', mime: 'application/json', content: '{oops', caption: 'x' }) }],
    ['an unknown tool', { name: 'delete_everything', argumentChunks: ['{}'] }],
    ['a missing content', { argumentChunks: argumentChunks({ filename: 'a.md', mime: 'text/markdown', caption: 'x' }) }],
  ])('%s: the reply is FAILED with bad_response and nothing is stored; retryReply answers again', async (_name, toolCall) => {
    const user = newUser();
    const visionId = await createVision(user);
    const before = await storedObjects();
    fake.enqueue({ kind: 'stream', chunks: [], toolCall });
    await server.gql(SendMessageDocument, { input: { visionId, content: 'сделай документ' } }, { user });
    const reply = await settled(user, visionId);
    expect(reply).toMatchObject({ type: 'TEXT', state: 'FAILED', file: null });
    expect(reply.payload).toEqual({ error: { reason: 'bad_response' } });
    expect(await fileRows(visionId)).toEqual([]);
    expect(await storedObjects()).toEqual(before);
    expect(await chatRowsOf(visionId)).toHaveLength(1);

    const retried = await server.gql(RetryReplyDocument, { visionId }, { user });
    expect(retried.errors).toBeUndefined();
    const again = await settled(user, visionId);
    expect(again).toMatchObject({ type: 'TEXT', state: 'COMPLETE', content: 'Hello from the coach.' });
  });
});

describe('stop, statuses, idempotency', () => {
  test('stopReply while the arguments stream: STOPPED, no file', async () => {
    const user = newUser();
    const visionId = await createVision(user);
    let release!: () => void;
    fake.enqueue({ kind: 'stream', chunks: [], hold: new Promise<void>((r) => (release = r)), toolCall: { argumentChunks: argumentChunks({ filename: 'a.md', mime: 'text/markdown', content: '# a', caption: 'x' }) } });
    // sendMessage answers when the reply has ended
    const sending = server.gql(SendMessageDocument, { input: { visionId, content: 'план' } }, { user });
    await fake.waitForRequests(1);
    const stopped = await server.gql(StopReplyDocument, { visionId }, { user });
    expect(stopped.data?.stopReply).toBe(true);
    release();
    expect((await sending).data?.sendMessage.assistantMessage).toMatchObject({ type: 'TEXT', state: 'STOPPED' });
    const reply = await settled(user, visionId);
    expect(reply).toMatchObject({ type: 'TEXT', state: 'STOPPED', file: null });
    expect(await fileRows(visionId)).toEqual([]);
  });

  test('freezing the vision while the call streams: no file; a FROZEN or DELETED vision keeps its files downloadable by the owner only', async () => {
    const user = newUser();
    const visionId = await createVision(user);
    fake.enqueue({ kind: 'stream', chunks: [], toolCall: { argumentChunks: argumentChunks({ filename: 'keep.md', mime: 'text/markdown', content: '# keep', caption: 'kept' }) } });
    await server.gql(SendMessageDocument, { input: { visionId, content: 'файл' } }, { user });
    const kept = await settled(user, visionId);
    expect(kept.type).toBe('FILE_RESULT');

    let release!: () => void;
    fake.enqueue({ kind: 'stream', chunks: [], hold: new Promise<void>((r) => (release = r)), toolCall: { argumentChunks: argumentChunks({ filename: 'late.md', mime: 'text/markdown', content: '# late', caption: 'x' }) } });
    const sending = server.gql(SendMessageDocument, { input: { visionId, content: 'ещё файл' } }, { user });
    await fake.waitForRequests(2);
    const frozen = await server.gql<any, any>(`mutation($id: ID!) { setVisionStatus(id: $id, status: FROZEN) { status } }`, { id: visionId }, { user });
    expect(frozen.data?.setVisionStatus.status).toBe('FROZEN');
    release();
    await sending;
    const late = await settled(user, visionId);
    expect(late).toMatchObject({ type: 'TEXT', state: 'STOPPED', file: null });
    expect((await fileRows(visionId)).map((f) => f.filename)).toEqual(['keep.md']);

    // FROZEN: no new message, so no new tool call
    const refused = await server.gql(SendMessageDocument, { input: { visionId, content: 'файл' } }, { user });
    expect(errorCode(refused)).toBe('VISION_NOT_ACTIVE');
    expect(fake.requests.filter((r) => r.path.endsWith('/chat/completions'))).toHaveLength(2);

    for (const status of ['FROZEN', 'DELETED']) {
      await server.gql<any, any>(`mutation($id: ID!, $s: VisionStatus!) { setVisionStatus(id: $id, status: $s) { status } }`, { id: visionId, s: status }, { user });
      const r = await server.gql<any, any>(`query($id: ID!) { vision(id: $id) { status messages(first: 2) { edges { node { file { url } } } } } }`, { id: visionId }, { user });
      expect(r.data.vision.status).toBe(status);
      const url = r.data.vision.messages.edges.map((e: any) => e.node.file?.url).find(Boolean);
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('# keep');
    }
    // another user sees no vision, so no file and no link
    const other = await server.gql<any, any>(MESSAGE, { id: visionId }, { user: newUser() });
    expect(other.errors).toBeUndefined();
    expect(other.data.vision).toBeNull();
  });

  test('the same clientMessageId twice: one reply, one file, one model call', async () => {
    const user = newUser();
    const visionId = await createVision(user);
    fake.enqueue({ kind: 'stream', chunks: [], chunkDelayMs: 20, toolCall: { argumentChunks: argumentChunks({ filename: 'once.md', mime: 'text/markdown', content: '# once', caption: 'once' }) } });
    const input = { visionId, content: 'документ', clientMessageId: '9b1f4c8e-2d7a-4c1e-9f3b-5a6d7e8f9012' };
    const [a, b] = await Promise.all([server.gql(SendMessageDocument, { input }, { user }), server.gql(SendMessageDocument, { input }, { user })]);
    expect(a.data?.sendMessage.assistantMessage.id).toBe(b.data?.sendMessage.assistantMessage.id);
    const reply = await settled(user, visionId);
    expect(reply.type).toBe('FILE_RESULT');
    const again = await server.gql(SendMessageDocument, { input }, { user });
    expect(again.data?.sendMessage.assistantMessage).toMatchObject({ id: reply.id, type: 'FILE_RESULT', state: 'COMPLETE' });
    expect(await fileRows(visionId)).toHaveLength(1);
    expect(fake.requests.filter((r) => r.path.endsWith('/chat/completions'))).toHaveLength(1);
  });
});

describe('offline responder', () => {
  let offline: TestServer;
  let offlineDir: string;
  beforeAll(async () => {
    offlineDir = await mkdtemp(join(tmpdir(), 'vp-docs-offline-'));
    offline = await startTestServer({ SUMMARIES: 'false', FILE_DIR: offlineDir });
  });
  afterAll(async () => {
    await offline?.stop();
    await rm(offlineDir, { recursive: true, force: true });
  });

  test('asked for a plan with no key, the coach makes plan.md; other messages get text', async () => {
    const user = newUser();
    const created = await offline.gql(CreateVisionDocument, { input: { title: 'Выучить испанский' } }, { user });
    const visionId = created.data!.createVision.id;
    const wait = async () => {
      let node: any;
      await waitUntil('offline reply', async () => {
        const r = await offline.gql<any, any>(MESSAGE, { id: visionId }, { user });
        node = r.data?.vision?.messages.edges[0]?.node;
        return node && node.state !== 'STREAMING';
      }, 10_000, 30);
      return node;
    };
    await offline.gql(SendMessageDocument, { input: { visionId, content: 'Составь мне план на месяц' } }, { user });
    const doc = await wait();
    expect(doc).toMatchObject({ type: 'FILE_RESULT', state: 'COMPLETE' });
    expect(doc.file).toMatchObject({ filename: 'plan.md', mime: 'text/markdown' });
    const body = await (await fetch(doc.file.url)).text();
    expect(body).toContain('# План: Выучить испанский');
    expect(body).toContain('Составь мне план на месяц');
    const keys: string[] = [];
    for await (const o of offline.server.files.storage.list()) keys.push(o.key);
    expect(keys).toEqual([`files/${doc.file.id}`]);

    await offline.gql(SendMessageDocument, { input: { visionId, content: 'Я учу слова каждый день' } }, { user });
    const text = await wait();
    expect(text).toMatchObject({ type: 'TEXT', state: 'COMPLETE', file: null });
  });
});
