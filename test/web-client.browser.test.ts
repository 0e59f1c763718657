/**
 * The reference web client (examples/web) driven in real Chromium against the real server.
 *
 * The built client is served by a small static server that also proxies /graphql (HTTP and the
 * WebSocket upgrade) to the API, as `vite preview` does for `npm run example:web`; the model is
 * the fake OpenAI server, so a reply can be slow enough to watch it stream and to stop it, or
 * fail. Every request the page makes is checked against the persisted query manifest the client
 * was built with: the hash it sends is the manifest's id, and a text sent with it is the
 * manifest's body (so APQ, the server's default, and the safelist mode both accept it). The main
 * flow runs twice: against the default server (APQ), then against a server started with
 * PERSISTED_DOCUMENTS=<the built manifest>, where anything else is refused.
 *
 * No browser is downloaded: Debian's chromium (test/support/chromium.ts); without one the suite
 * is skipped with a loud notice, except under CI=true.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { artifactPath, describeWithChromium, launchChromium } from './support/chromium';
import { startFakeOpenAI, type FakeOpenAI } from './support/fake-openai';
import { newUser, postGraphQL, startTestServer, type TestServer } from './support/server';
import { startStaticProxy, type StaticProxy } from './support/static-proxy';
import { sleep, waitUntil } from './support/wait';

const WEB = resolve(__dirname, '../examples/web');
const DIST = join(WEB, 'dist');
const MANIFEST_PATH = join(WEB, 'persisted-query-manifest.json');
/** What the client's build reads: a newer file than dist/index.html means the build is stale. */
const BUILD_INPUTS = ['src', 'index.html', 'package.json', 'package-lock.json', 'codegen.yml', 'persisted-query-manifest.config.json', 'vite.config.ts', '../../schema.graphql'];
const GENERATED = [join(WEB, 'src/gql'), MANIFEST_PATH];

const PAGE_SIZE = 20; // examples/web/src/VisionView.tsx

interface ManifestOperation {
  id: string;
  name: string;
  type: string;
  body: string;
}

jest.setTimeout(180_000);

// ------------------------------------------------------------------ build

function newestMtime(path: string): number {
  if (GENERATED.includes(path)) return 0; // written by the build itself, before dist
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return readdirSync(path).reduce((max, name) => Math.max(max, newestMtime(join(path, name))), st.mtimeMs);
}

/** Builds examples/web when dist/ is missing or older than its sources (codegen, manifest, vite build). */
function ensureClientBuilt(): void {
  if (!existsSync(join(WEB, 'node_modules'))) {
    throw new Error('examples/web/node_modules is missing: run "npm --prefix examples/web install" first (.ci/run must, before the suite)');
  }
  const built = join(DIST, 'index.html');
  const inputs = Math.max(...BUILD_INPUTS.map((p) => join(WEB, p)).filter((p) => existsSync(p)).map(newestMtime));
  if (existsSync(built) && existsSync(MANIFEST_PATH) && statSync(built).mtimeMs >= inputs) return;
  try {
    execFileSync('npm', ['--prefix', WEB, 'run', 'build'], { stdio: 'pipe', timeout: 170_000 });
  } catch (err) {
    const e = err as { stdout?: Buffer; stderr?: Buffer; message: string };
    throw new Error(`building examples/web failed: ${e.message}\n${e.stdout?.toString() ?? ''}\n${e.stderr?.toString() ?? ''}`);
  }
}

function readManifest(): ManifestOperation[] {
  const m = JSON.parse(readFileSync(MANIFEST_PATH, 'utf8')) as { format: string; version: number; operations: ManifestOperation[] };
  expect(m.format).toBe('apollo-persisted-query-manifest');
  return m.operations;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

// ------------------------------------------------------------------ the page

/**
 * Records what the page sends to /graphql (HTTP bodies and WebSocket `subscribe` frames) and
 * what it logs, so a test can check the documents against the manifest and fail on page errors.
 */
class PageLog {
  http: { operationName?: string; query?: string; hash?: string }[] = [];
  ws: { operationName?: string; query?: string; hash?: string; variables?: Record<string, unknown> }[] = [];
  errors: string[] = [];

  constructor(page: Page) {
    page.on('request', (req) => {
      if (!req.url().includes('/graphql') || req.method() !== 'POST') return;
      const body = req.postDataJSON() as { operationName?: string; query?: string; extensions?: { persistedQuery?: { sha256Hash?: string } } };
      this.http.push({ operationName: body.operationName, query: body.query, hash: body.extensions?.persistedQuery?.sha256Hash });
    });
    page.on('websocket', (ws) => {
      ws.on('framesent', ({ payload }) => {
        const msg = JSON.parse(String(payload)) as {
          type: string;
          payload?: { operationName?: string; query?: string; variables?: Record<string, unknown>; extensions?: { persistedQuery?: { sha256Hash?: string } } };
        };
        if (msg.type !== 'subscribe' || !msg.payload) return;
        const p = msg.payload;
        this.ws.push({ operationName: p.operationName, query: p.query, hash: p.extensions?.persistedQuery?.sha256Hash, variables: p.variables });
      });
    });
    page.on('console', (m) => {
      if (m.type() === 'error') this.errors.push(m.text());
    });
    page.on('pageerror', (e) => this.errors.push(`pageerror: ${e.message}`));
  }

  /** Every document sent is the manifest's: its id as the hash, its body as the text. */
  expectManifestDocuments(manifest: ManifestOperation[]): void {
    const byName = new Map(manifest.map((o) => [o.name, o]));
    const sent = [...this.http, ...this.ws];
    expect(sent.length).toBeGreaterThan(0);
    for (const s of sent) {
      const op = byName.get(s.operationName ?? '');
      expect({ name: s.operationName, known: op !== undefined }).toEqual({ name: s.operationName, known: true });
      expect({ name: s.operationName, hash: s.hash }).toEqual({ name: s.operationName, hash: op!.id });
      if (s.query !== undefined) {
        expect(s.query).toBe(op!.body);
        expect(sha256(s.query)).toBe(op!.id);
      }
    }
    expect(this.ws.length).toBeGreaterThan(0); // subscriptions went through graphql-ws
    // the manifest check link logs a document it does not know
    expect(this.errors.filter((e) => e.includes('[persisted-queries]'))).toEqual([]);
  }
}

/** The last reply's state and text, read at once (no auto-waiting: a poll must not block). */
async function lastReplyNow(page: Page): Promise<{ state: string | null; text: string }> {
  return page
    .locator('[data-testid="message"][data-sender="ASSISTANT"]')
    .evaluateAll((els) => {
      const el = els[els.length - 1];
      if (!el) return { state: null, text: '' };
      return { state: el.getAttribute('data-state'), text: (el.querySelector('[data-testid="message-content"]')?.textContent ?? '').trim() };
    });
}

async function stateOf(page: Page): Promise<string | null> {
  return (await lastReplyNow(page)).state;
}

async function textOf(page: Page): Promise<string> {
  return (await lastReplyNow(page)).text;
}

/** The feed as (sender, state, text) rows. */
async function feedRows(page: Page): Promise<string[]> {
  return page.getByTestId('message').evaluateAll((els) =>
    els.map((el) => `${el.getAttribute('data-sender')}|${el.getAttribute('data-state')}|${el.querySelector('[data-testid="message-content"]')?.textContent ?? ''}`),
  );
}

async function feedCount(page: Page): Promise<string> {
  return ((await page.getByTestId('feed-count').textContent()) ?? '').trim();
}

async function signIn(page: Page, user: string): Promise<void> {
  await page.getByTestId('user-id').fill(user);
  await page.getByTestId('sign-in').click();
  await page.getByTestId('create-vision').waitFor();
}

async function createVision(page: Page, title: string): Promise<string> {
  await page.getByTestId('new-vision-title').fill(title);
  await page.getByTestId('create-vision').click();
  await waitUntil(`the new vision "${title}" to open`, async () => (await page.getByTestId('vision-title').textContent().catch(() => null)) === title, 15_000);
  const id = /#\/v\/(.+)$/.exec(page.url())?.[1];
  expect(id).toBeTruthy();
  await page.getByTestId('feed-empty').waitFor();
  return id!;
}

async function send(page: Page, text: string): Promise<void> {
  await page.getByTestId('composer-input').fill(text);
  await page.getByTestId('send').click();
}

/** Waits for the last reply to stream, noting its text while it is STREAMING; returns the distinct texts seen. */
async function watchStream(page: Page, until: (state: string | null, text: string, seen: string[]) => boolean, timeoutMs = 20_000): Promise<string[]> {
  const seen: string[] = [];
  await waitUntil(
    'the reply to stream',
    async () => {
      const { state, text } = await lastReplyNow(page);
      if (state === 'STREAMING' && text && seen.at(-1) !== text) seen.push(text);
      return until(state, text, seen);
    },
    timeoutMs,
    40,
  );
  return seen;
}

// ------------------------------------------------------------------ the flows

/** The model's text for a reply, in chunks of `size` characters. */
function words(n: number, prefix: string): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i + 1} `);
}

async function streamAndStop(page: Page, fake: FakeOpenAI, server: TestServer, visionId: string): Promise<void> {
  // a long, slow reply (40 s if left alone): stopped half way, it ends STOPPED and stays so
  const long = words(400, 'слово');
  fake.enqueue({ kind: 'stream', chunks: long, chunkDelayMs: 100 });
  await send(page, 'Расскажи очень подробно, как готовиться');
  await watchStream(page, (state, text) => state === 'STREAMING' && text.split(' ').length > 8);
  await page.getByTestId('stop').click();
  await waitUntil('the reply to be STOPPED', async () => (await stateOf(page)) === 'STOPPED', 10_000);
  const stoppedText = await textOf(page);
  expect(stoppedText.length).toBeGreaterThan(0);
  expect(long.join('').startsWith(stoppedText)).toBe(true);
  expect(stoppedText.length).toBeLessThan(long.join('').trim().length);
  await page.getByTestId('stop').waitFor({ state: 'detached' });
  await sleep(1000);
  expect(await stateOf(page)).toBe('STOPPED');
  expect(await textOf(page)).toBe(stoppedText);
  const [row] = await server.sql<{ state: string; content: string }>(
    `select state, content from vision_messages where visionid = ? and sender = 'assistant' order by createdat desc, id desc limit 1`,
    [visionId],
  );
  expect({ state: row?.state, content: row?.content.trim() }).toEqual({ state: 'stopped', content: stoppedText });
}

async function sendAndWatch(page: Page, fake: FakeOpenAI, question: string, answer: string[]): Promise<void> {
  fake.enqueue({ kind: 'stream', chunks: answer, chunkDelayMs: 200, firstByteDelayMs: 200 });
  await send(page, question);
  // the question is in the feed at once, the answer grows in front of the reader
  await waitUntil('the question to appear', async () => (await feedRows(page)).some((r) => r.startsWith('USER|') && r.endsWith(`|${question}`)));
  const seen = await watchStream(page, (state) => state === 'COMPLETE');
  expect(seen.length).toBeGreaterThanOrEqual(2);
  for (let i = 1; i < seen.length; i++) {
    expect(seen[i]!.startsWith(seen[i - 1]!)).toBe(true);
    expect(seen[i]!.length).toBeGreaterThan(seen[i - 1]!.length);
  }
  expect(await textOf(page)).toBe(answer.join('').trim());
}

/** Reload: the same feed, from the server. */
async function reloadAndCompare(page: Page): Promise<string[]> {
  const before = await feedRows(page);
  await page.reload();
  await page.getByTestId('feed').waitFor();
  await waitUntil('the feed after the reload', async () => (await feedRows(page)).length === before.length, 15_000);
  const after = await feedRows(page);
  expect(after).toEqual(before);
  return after;
}

// ------------------------------------------------------------------ the suite

describeWithChromium('reference web client (examples/web) in Chromium', () => {
  let browser: Browser;
  let fake: FakeOpenAI;
  let manifest: ManifestOperation[];
  const serverEnv = (): Record<string, string> => ({
    OPENAI_API_KEY: 'test-key',
    OPENAI_BASE_URL: fake.baseURL,
    LLM_MAX_RETRIES: '0',
    LLM_TIMEOUT_MS: '60000',
    REPLY_FLUSH_MS: '100',
    SUMMARIES: 'false',
    DOCUMENT_TOOL: 'false',
  });

  beforeAll(async () => {
    ensureClientBuilt();
    manifest = readManifest();
    fake = await startFakeOpenAI();
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await fake?.close();
  });

  describe('against the default server (automatic persisted queries)', () => {
    let server: TestServer;
    let web: StaticProxy;
    let context: BrowserContext;
    let page: Page;
    let log: PageLog;

    beforeAll(async () => {
      server = await startTestServer(serverEnv());
      web = await startStaticProxy({ root: DIST, apiUrl: server.url });
      context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      page = await context.newPage();
      log = new PageLog(page);
    });

    beforeEach(() => fake.reset());

    afterAll(async () => {
      await context?.close();
      await web?.close();
      await server?.stop();
    });

    test('create, send and watch the reply stream, stop, fail and retry, reload: the same feed', async () => {
      const user = newUser('web');
      await page.goto(web.url);
      await page.getByTestId('need-identity').waitFor();
      await signIn(page, user);
      await waitUntil('the WebSocket to connect', async () => (await page.getByTestId('ws-status').getAttribute('data-state')) !== 'closed', 10_000).catch(() => undefined);

      const visionId = await createVision(page, 'Пробежать марафон');
      const item = page.locator(`[data-testid="vision-item"][data-id="${visionId}"]`);
      await item.waitFor();

      // 1. a question, and the answer streaming in
      await sendAndWatch(page, fake, 'Хочу пробежать марафон. С чего начать?', words(12, 'шаг'));
      expect(await page.getByTestId('composer-input').inputValue()).toBe('');

      // 2. a long answer, stopped
      await streamAndStop(page, fake, server, visionId);

      // 3. a failed answer: the error with its code, the FAILED block, then retry
      fake.enqueue({ kind: 'status', status: 500 });
      await send(page, 'А что насчёт питания?');
      await page.getByTestId('error').waitFor({ timeout: 15_000 });
      expect(await page.getByTestId('error-code').textContent()).toBe('LLM_FAILED');
      await waitUntil('the FAILED reply', async () => (await stateOf(page)) === 'FAILED');
      const answer = words(6, 'еда');
      fake.enqueue({ kind: 'stream', chunks: answer, chunkDelayMs: 150 });
      await page.getByTestId('retry').click();
      await waitUntil('the retried reply', async () => (await stateOf(page)) === 'COMPLETE' && (await textOf(page)) === answer.join('').trim(), 15_000);
      await page.getByTestId('retry').waitFor({ state: 'detached' });
      expect(await page.getByTestId('error').count()).toBe(0);

      // 4. a reload while a reply streams: the page resumes it (replyDelta with replyId and
      // afterSeq: 0 replays it from its first chunk) and watches the rest arrive
      const resumed = words(40, 'план');
      fake.enqueue({ kind: 'stream', chunks: resumed, chunkDelayMs: 100 });
      await send(page, 'Составь план на месяц');
      await watchStream(page, (state, text) => state === 'STREAMING' && text.split(' ').length > 5);
      await page.reload();
      await page.getByTestId('feed').waitFor();
      const afterReload = await watchStream(page, (state) => state === 'COMPLETE');
      expect(afterReload.length).toBeGreaterThanOrEqual(2);
      expect(afterReload[0]!.startsWith('план1 план2')).toBe(true);
      expect(await textOf(page)).toBe(resumed.join('').trim());
      const replyId = (await page.locator('[data-testid="message"][data-sender="ASSISTANT"]').last().getAttribute('data-id'))!;
      expect(log.ws).toContainEqual(expect.objectContaining({ operationName: 'ReplyDelta', variables: { visionId, replyId, afterSeq: 0 } }));

      const rows = await feedRows(page);
      expect(rows.map((r) => r.split('|').slice(0, 2).join('|'))).toEqual([
        'USER|COMPLETE',
        'ASSISTANT|COMPLETE',
        'USER|COMPLETE',
        'ASSISTANT|STOPPED',
        'USER|COMPLETE',
        'ASSISTANT|FAILED',
        'ASSISTANT|COMPLETE',
        'USER|COMPLETE',
        'ASSISTANT|COMPLETE',
      ]);

      // 5. reload: the server is the truth
      await reloadAndCompare(page);
      expect(await page.getByTestId('vision-title').textContent()).toBe('Пробежать марафон');
      await page.screenshot({ path: artifactPath('web-client.png'), fullPage: true });

      // 6. rename, freeze (read-only), restore, delete (gone from the list), restore from the deleted ones
      await page.getByTestId('rename').click();
      await page.getByTestId('rename-input').fill('Марафон осенью');
      await page.getByTestId('rename-save').click();
      await waitUntil('the new title', async () => (await page.getByTestId('vision-title').textContent()) === 'Марафон осенью');
      await waitUntil('the new title in the list', async () => ((await item.textContent()) ?? '').includes('Марафон осенью'));
      await page.getByTestId('freeze').click();
      await waitUntil('FROZEN', async () => (await page.getByTestId('vision-status').textContent()) === 'заморожена');
      expect(await page.getByTestId('composer-input').isDisabled()).toBe(true);
      await page.getByTestId('restore').click();
      await waitUntil('ACTIVE again', async () => (await page.getByTestId('vision-status').textContent()) === 'активна');
      expect(await page.getByTestId('composer-input').isDisabled()).toBe(false);
      await page.getByTestId('delete').click();
      await waitUntil('DELETED', async () => (await page.getByTestId('vision-status').textContent()) === 'удалена');
      await item.waitFor({ state: 'detached' });
      await page.getByTestId('show-deleted').check();
      await waitUntil('the deleted vision listed', async () => (await item.getAttribute('data-status').catch(() => null)) === 'DELETED');
      await page.getByTestId('restore').click();
      await waitUntil('restored', async () => (await item.getAttribute('data-status').catch(() => null)) === 'ACTIVE');
      const [v] = await server.sql<{ title: string; status: string }>(`select title, status from visions where id = ?`, [visionId]);
      expect(v).toEqual({ title: 'Марафон осенью', status: 'active' });

      log.expectManifestDocuments(manifest);
      // APQ: the hashes were registered with their text once, then sent alone
      expect(log.http.some((r) => r.query === undefined && r.hash)).toBe(true);
      expect(log.errors.filter((e) => !/Failed to load resource/.test(e))).toEqual([]);
    });

    test('older messages load upward, page by page (cursor pagination)', async () => {
      const user = newUser('web-pages');
      // 25 questions and 25 answers through the API, the model answering at once
      const created = await server.gql<{ createVision: { id: string } }, unknown>(`mutation { createVision(input: { title: "Длинный путь" }) { id } }`, undefined, { user });
      const visionId = created.data!.createVision.id;
      for (let i = 1; i <= 25; i++) {
        fake.enqueue({ kind: 'stream', chunks: [`Ответ ${i}`] });
        const r = await server.gql(`mutation($input: SendMessageInput!) { sendMessage(input: $input) { assistantMessage { id } } }`, { input: { visionId, content: `Вопрос ${i}` } }, { user });
        expect(r.errors).toBeUndefined();
      }

      const p = await context.newPage();
      try {
        await p.goto(`${web.url}/#/v/${visionId}`);
        await signIn(p, user);
        await waitUntil('the newest page', async () => (await feedCount(p)) === `показано ${PAGE_SIZE} из 50`, 15_000);
        let rows = await feedRows(p);
        expect(rows[0]).toBe('USER|COMPLETE|Вопрос 16');
        expect(rows.at(-1)).toBe('ASSISTANT|COMPLETE|Ответ 25');

        await p.getByTestId('load-older').click();
        await waitUntil('the second page', async () => (await feedCount(p)) === `показано ${2 * PAGE_SIZE} из 50`);
        await p.getByTestId('load-older').click();
        await waitUntil('the whole dialog', async () => (await feedCount(p)) === 'показано 50 из 50');
        await p.getByTestId('load-older').waitFor({ state: 'detached' });
        rows = await feedRows(p);
        const expected = Array.from({ length: 25 }, (_, k) => [`USER|COMPLETE|Вопрос ${k + 1}`, `ASSISTANT|COMPLETE|Ответ ${k + 1}`]).flat();
        expect(rows).toEqual(expected);

        // a new turn after the older pages: appended, nothing lost
        fake.enqueue({ kind: 'stream', chunks: ['Ответ', ' 26'], chunkDelayMs: 100 });
        await send(p, 'Вопрос 26');
        await waitUntil('the new turn', async () => (await feedCount(p)) === 'показано 52 из 52', 15_000);
        expect((await feedRows(p)).slice(-2)).toEqual(['USER|COMPLETE|Вопрос 26', 'ASSISTANT|COMPLETE|Ответ 26']);
      } finally {
        await p.close();
      }
    });

    test('a turn sent from another device while the WebSocket was away is in the feed after the reconnect', async () => {
      const user = newUser('web-reconnect');
      const created = await server.gql<{ createVision: { id: string } }, unknown>(`mutation { createVision(input: { title: "Связь" }) { id } }`, undefined, { user });
      const visionId = created.data!.createVision.id;
      const p = await context.newPage();
      const socketState = () => p.getByTestId('ws-status').getAttribute('data-state');
      try {
        await p.goto(`${web.url}/#/v/${visionId}`);
        await signIn(p, user);
        await p.getByTestId('feed-empty').waitFor();
        await waitUntil('the WebSocket to connect', async () => (await socketState()) === 'connected', 10_000);

        // the network goes away; meanwhile the phone sends a question and gets its answer
        const restore = web.dropWebSockets();
        await waitUntil('the WebSocket to be lost', async () => (await socketState()) !== 'connected', 10_000);
        fake.enqueue({ kind: 'stream', chunks: ['Ответ', ' с телефона'] });
        const sent = await server.gql(`mutation($input: SendMessageInput!) { sendMessage(input: $input) { assistantMessage { state } } }`, { input: { visionId, content: 'Вопрос с телефона' } }, { user });
        expect(sent.errors).toBeUndefined();
        // nothing of it reached the page (its messageAdded events went nowhere)
        expect(await feedRows(p)).toEqual([]);

        // back online: graphql-ws reconnects by itself, and the page fetches what it missed
        restore();
        await waitUntil('the WebSocket to reconnect', async () => (await socketState()) === 'connected', 20_000);
        await waitUntil('the missed turn in the feed', async () => (await feedRows(p)).length === 2, 10_000);
        expect(await feedRows(p)).toEqual(['USER|COMPLETE|Вопрос с телефона', 'ASSISTANT|COMPLETE|Ответ с телефона']);
      } finally {
        await p.close();
      }
    });
  });

  describe('against a server with PERSISTED_DOCUMENTS (the built manifest as a safelist)', () => {
    let server: TestServer;
    let web: StaticProxy;
    let context: BrowserContext;

    beforeAll(async () => {
      server = await startTestServer({ ...serverEnv(), PERSISTED_DOCUMENTS: MANIFEST_PATH });
      web = await startStaticProxy({ root: DIST, apiUrl: server.url });
      context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    });

    beforeEach(() => fake.reset());

    afterAll(async () => {
      await context?.close();
      await web?.close();
      await server?.stop();
    });

    test('a document outside the manifest is refused', async () => {
      const r = await postGraphQL<unknown>(`${web.url}/graphql`, '{ visions { totalCount } }', undefined, { user: newUser('web-safelist') });
      expect(r.status).toBe(400);
      expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'PERSISTED_QUERY_NOT_IN_LIST' });
    });

    test('the main flow runs on the manifest alone: create, send and stream, stop, reload', async () => {
      const page = await context.newPage();
      const log = new PageLog(page);
      try {
        await page.goto(web.url);
        await signIn(page, newUser('web-safelist'));
        const visionId = await createVision(page, 'Выучить испанский');
        await sendAndWatch(page, fake, 'С чего начать испанский?', words(10, 'урок'));
        await streamAndStop(page, fake, server, visionId);
        const rows = await reloadAndCompare(page);
        expect(rows.map((r) => r.split('|').slice(0, 2).join('|'))).toEqual(['USER|COMPLETE', 'ASSISTANT|COMPLETE', 'USER|COMPLETE', 'ASSISTANT|STOPPED']);
        log.expectManifestDocuments(manifest);
        // the safelist knows every hash: no request needed its text
        expect(log.http.filter((r) => r.query !== undefined)).toEqual([]);
        expect(log.errors).toEqual([]);
      } finally {
        await page.close();
      }
    });
  });
});
