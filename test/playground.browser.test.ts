/**
 * The playground in headless Chromium with every request off this server's origin blocked (and
 * none attempted): GraphiQL renders, the CreateVision example runs and fills the visionId in,
 * the Live reply panel watches replyDelta over graphql-ws while SendMessage gets the offline
 * responder's reply. Screenshot: test/artifacts/playground.png.
 */
import type { Browser, Page } from 'playwright-core';
import { artifactPath, describeWithChromium, launchChromium } from './support/chromium';
import { startTestServer, type TestServer } from './support/server';

/**
 * Text of the visible Monaco editor inside `container`, whitespace collapsed: Monaco renders
 * spaces as no-break spaces and marks the points where it wraps a long line with "·".
 */
async function editorText(page: Page, container: string): Promise<string> {
  const text = await page.locator(`${container} .view-lines`).filter({ visible: true }).first().innerText();
  return text.replace(/[\s\u00a0\u00b7]+/g, ' ');
}

/** Runs one operation of the multi-operation document: the run button opens a menu of names. */
async function runOperation(page: Page, name: string): Promise<void> {
  await page.locator('.graphiql-execute-button').click();
  await page.getByRole('menuitem', { name, exact: true }).click();
}

describeWithChromium('playground in a browser', () => {
  let s: TestServer;
  let browser: Browser;
  beforeAll(async () => {
    s = await startTestServer();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await s?.stop();
  });

  it('works offline: renders, creates a vision, sends a message and watches the reply stream', async () => {
    const origin = new URL(s.url).origin;
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const offOrigin: string[] = [];
    const problems: string[] = [];
    const sockets: string[] = [];
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (new URL(url).origin === origin || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
      offOrigin.push(url);
      return route.abort('blockedbyclient');
    });
    page.on('requestfailed', (r) => {
      if (!r.url().startsWith(origin)) offOrigin.push(r.url());
    });
    page.on('websocket', (ws) => sockets.push(ws.url()));
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' || /Content Security Policy/i.test(msg.text())) problems.push(`console.${msg.type()}: ${msg.text()}`);
    });
    // violations of the page's Content-Security-Policy, as the page itself sees them
    await page.addInitScript(
      "window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));",
    );

    const shot = () => page.screenshot({ path: artifactPath('playground.png') });
    try {
      const res = await page.goto(s.graphqlUrl);
      expect(res?.status()).toBe(200);
      expect(res?.headers()['content-security-policy']).toContain("script-src 'self'");

      // GraphiQL with Monaco: the example document, the schema loaded (docs), variables shown
      await page.locator('.graphiql-container .graphiql-query-editor .monaco-editor').waitFor({ timeout: 30_000 });
      await expectEventually(async () => expect(await editorText(page, '.graphiql-query-editor')).toContain('mutation CreateVision'));
      await page.getByRole('button', { name: 'Headers' }).click();
      await expectEventually(async () => expect(await editorText(page, '.graphiql-editor-tool')).toContain('"x-user-id": "playground-user"'));
      await page.getByRole('button', { name: 'Variables' }).click();

      // CreateVision: the result panel shows the vision, and its id lands in the variables
      await runOperation(page, 'CreateVision');
      let visionId = '';
      await expectEventually(async () => {
        const out = await editorText(page, '.graphiql-response');
        expect(out).toContain('"createVision"');
        expect(out).toContain('"title": "Run a marathon next spring"');
        expect(out).toContain('"status": "ACTIVE"');
        visionId = /"id": "([^"]+)"/.exec(out)![1]!;
      });
      // made as the Headers tab's development identity
      const mine = await s.gql<{ vision: { title: string } | null }, { id: string }>('query ($id: ID!) { vision(id: $id) { title } }', { id: visionId }, { user: 'playground-user' });
      expect(mine.data?.vision?.title).toBe('Run a marathon next spring');
      await expectEventually(async () => expect(await editorText(page, '.graphiql-editor-tool')).toContain(`"visionId": "${visionId}"`));

      // Live reply panel: watches messageAdded and replyDelta of that vision over graphql-ws
      await page.getByRole('button', { name: 'Show Live reply' }).click();
      await expectEventually(async () => expect(await page.getByLabel('Vision id to watch').inputValue()).toBe(visionId));
      await page.getByRole('button', { name: 'Watch vision' }).click();
      await page.getByText(`watching ${visionId}`).waitFor({ timeout: 10_000 });

      // SendMessage: the coach's reply (the offline responder) in the result panel and in the panel
      await runOperation(page, 'SendMessage');
      await expectEventually(async () => {
        const out = await editorText(page, '.graphiql-response');
        expect(out).toContain('"assistantMessage"');
        expect(out).toContain('"state": "COMPLETE"');
        expect(out).toContain('(offline reply, no model connected) You wrote: \\"Hello coach! Where do I start?\\"');
      });
      const live = page.getByRole('list', { name: 'Live dialog' });
      await expectEventually(async () => {
        const text = await live.innerText();
        expect(text).toContain('Hello coach! Where do I start?');
        expect(text).toMatch(/assistant\s+\(offline reply, no model connected\) You wrote: "Hello coach! Where do I start\?"/);
      });
      // after the send, a fresh idempotency key is in the variables
      const vars = await editorText(page, '.graphiql-editor-tool');
      expect(vars).toMatch(/"clientMessageId": "[0-9a-f-]{36}"/);
      await shot();

      // the WatchReply example in GraphiQL itself (graphql-ws with the Headers tab as
      // connectionParams): a reply sent from elsewhere streams into the result panel
      await page.getByRole('button', { name: 'Stop watching' }).click();
      const subscribed = new Promise<void>((resolve) =>
        page.on('websocket', (ws) => ws.on('framesent', (f) => String(f.payload).includes('"subscribe"') && String(f.payload).includes('WatchReply') && resolve())),
      );
      await runOperation(page, 'WatchReply');
      await subscribed;
      await page.locator('.graphiql-execute-button[aria-label^="Stop query"]').waitFor();
      let streamed = false;
      for (let attempt = 0; attempt < 3 && !streamed; attempt++) {
        // the server registers the subscription a moment after the frame leaves the browser
        await new Promise((r) => setTimeout(r, 300));
        const sent = await s.gql<{ sendMessage: { assistantMessage: { id: string } } }, { id: string }>(
          'mutation ($id: ID!) { sendMessage(input: { visionId: $id, content: "And the next step?" }) { assistantMessage { id } } }',
          { id: visionId },
          { user: 'playground-user' },
        );
        expect(sent.errors).toBeUndefined();
        const replyId = sent.data!.sendMessage.assistantMessage.id;
        streamed = await expectEventually(async () => {
          const out = await editorText(page, '.graphiql-response');
          expect(out).toContain('"replyDelta"');
          expect(out).toContain(`"replyId": "${replyId}"`);
          expect(out).toContain('"done": true');
          expect(out).toContain('"state": "COMPLETE"');
        }, 5000).then(
          () => true,
          () => false,
        );
      }
      expect(streamed).toBe(true);
      await page.locator('.graphiql-execute-button').click(); // stops the subscription
      await page.locator('.graphiql-execute-button[aria-label^="Execute query"]').waitFor();

      // a reload keeps the one tab, its variables and the identity (no duplicate tab, no lost header)
      await page.reload();
      await expectEventually(async () => expect(await editorText(page, '.graphiql-query-editor')).toContain('mutation CreateVision'));
      expect(await page.locator('.graphiql-tab').count()).toBe(1);
      await expectEventually(async () => expect(await editorText(page, '.graphiql-editor-tool')).toContain(`"visionId": "${visionId}"`));
      await page.getByRole('button', { name: 'Headers' }).click();
      await expectEventually(async () => expect(await editorText(page, '.graphiql-editor-tool')).toContain('"x-user-id": "playground-user"'));
      // the Live reply panel, still open, offers the vision of the variables again
      await expectEventually(async () => expect(await page.getByLabel('Vision id to watch').inputValue()).toBe(visionId));

      expect(sockets.length).toBeGreaterThan(0);
      for (const ws of sockets) expect(ws).toBe(`${origin.replace(/^http/, 'ws')}/graphql`);
      expect(await page.evaluate('window.__csp')).toEqual([]);
      expect(problems).toEqual([]);
      expect(offOrigin).toEqual([]);
    } catch (err) {
      await shot().catch(() => undefined);
      throw new Error(`${(err as Error).message}\n\noff-origin requests: ${JSON.stringify(offOrigin)}\nproblems: ${JSON.stringify(problems)}`, { cause: err });
    } finally {
      await context.close();
    }
  });
});

/** Retries an assertion until it passes (Monaco and React render asynchronously). */
async function expectEventually(check: () => Promise<void>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
