import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { print } from 'graphql';
import { createClient as createSseClient } from 'graphql-sse';
import { createClient, type Client } from 'graphql-ws';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import WebSocket from 'ws';
import { ConfigError, loadConfig } from '../src/config';
import { findFreePort } from '../src/db/embedded';
import { CreateVisionDocument, ListVisionsDocument, MessageAddedDocument, SendMessageDocument } from './generated/graphql';
import { errorCode, newUser, startTestServer, type GqlResult, type TestServer } from './support/server';
import { collect, wsClient } from './support/ws';

const SECRET = 'a-test-secret-that-is-at-least-32-characters-long';
const TOLERANCE = 10;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const nowSec = () => Math.floor(Date.now() / 1000);

function hs256(claims: Record<string, unknown>, exp?: number) {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  if (exp !== undefined) jwt = jwt.setExpirationTime(exp);
  return jwt.sign(new TextEncoder().encode(SECRET));
}

type Outcome = 'connected' | { code: number; reason: string };
type Closed = { code: number; reason: string };

/** A graphql-ws client that connects at once and does not retry. */
function connect(s: TestServer, token: string): Client {
  return createClient({
    url: s.url.replace(/^http/, 'ws') + '/graphql',
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    connectionParams: { authorization: `Bearer ${token}` },
    onNonLazyError: () => {},
  });
}

/** How a client's connection attempt ends: acknowledged, or closed with a code. */
function outcome(c: Client): Promise<Outcome> {
  return new Promise((resolve) => {
    c.on('connected', () => resolve('connected'));
    c.on('closed', (e) => resolve({ code: (e as Closed).code, reason: (e as Closed).reason }));
  });
}

function closeCode(c: Client): Promise<number> {
  return new Promise((resolve) => c.on('closed', (e) => resolve((e as Closed).code)));
}

function authError(r: GqlResult<unknown>) {
  return { status: r.status, code: errorCode(r), reason: r.errors![0]!.extensions?.reason };
}

describe('AUTH_CLOCK_TOLERANCE_SECONDS', () => {
  it('defaults to 30 s and is bounded to 0-300', () => {
    expect(loadConfig({}).auth.clockToleranceSeconds).toBe(30);
    expect(loadConfig({ AUTH_CLOCK_TOLERANCE_SECONDS: '0' }).auth.clockToleranceSeconds).toBe(0);
    for (const bad of ['301', '-1', '1.5', 'soon']) {
      expect(() => loadConfig({ AUTH_CLOCK_TOLERANCE_SECONDS: bad })).toThrow(ConfigError);
    }
  });
});

describe('JWT expiry (HS256)', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ AUTH_JWT_SECRET: SECRET, AUTH_CLOCK_TOLERANCE_SECONDS: String(TOLERANCE) });
  });
  afterAll(() => s?.stop());

  it('a token without exp is refused: UNAUTHENTICATED over HTTP, 4403 over WebSocket', async () => {
    const t = await hs256({ sub: newUser() });
    const r = await s.gql(ListVisionsDocument, {}, { token: t });
    expect(authError(r)).toEqual({ status: 401, code: 'UNAUTHENTICATED', reason: undefined });
    expect(r.errors![0]!.message).toMatch(/no exp claim/);

    const c = connect(s, t);
    expect(await outcome(c)).toEqual({ code: 4403, reason: 'Forbidden' });
    await c.dispose();
  });

  it('a token expired by less than the clock tolerance is accepted, by more it is refused', async () => {
    const within = await hs256({ sub: newUser() }, nowSec() - (TOLERANCE - 5));
    expect((await s.gql(ListVisionsDocument, {}, { token: within })).errors).toBeUndefined();
    const beyond = await hs256({ sub: newUser() }, nowSec() - (TOLERANCE + 5));
    const r = await s.gql(ListVisionsDocument, {}, { token: beyond });
    expect(authError(r)).toEqual({ status: 401, code: 'UNAUTHENTICATED', reason: undefined });
    expect(r.errors![0]!.message).toMatch(/expired/);
  });

  it('a WebSocket lives as long as its token: its subscriptions receive until the expiry, then the server closes it (4403) by itself; the token cache forgets it too', async () => {
    const user = newUser();
    const longLived = await hs256({ sub: user }, nowSec() + 300);
    const visionId = (await s.gql(CreateVisionDocument, {}, { token: longLived })).data!.createVision.id;
    const send = async (content: string) => expect((await s.gql(SendMessageDocument, { input: { visionId, content } }, { token: longLived })).errors).toBeUndefined();

    // accepted for about 3 more seconds: exp is in the past, within the tolerance
    const exp = nowSec() - TOLERANCE + 3;
    const expiresAt = (exp + TOLERANCE) * 1000;
    // one token goes through the verified-token cache first, the other is verified by the socket
    const cachedToken = await hs256({ sub: user, n: 1 }, exp);
    const freshToken = await hs256({ sub: user, n: 2 }, exp);
    expect((await s.gql(ListVisionsDocument, {}, { token: cachedToken })).errors).toBeUndefined();

    const clients = [wsClient(s.url, { token: cachedToken }), wsClient(s.url, { token: freshToken })];
    const closed = clients.map((c) => new Promise<{ code: number; at: number }>((resolve) => c.on('closed', (e) => resolve({ code: (e as Closed).code, at: Date.now() }))));
    const early = clients.map((c) => collect(c, MessageAddedDocument, { visionId }));
    const up = await Promise.all(clients.map(outcome));
    // the premise of the test: both subscriptions were sent before the tokens expired
    expect([up, Date.now() < expiresAt]).toEqual([['connected', 'connected'], true]);
    await sleep(300); // let the server register both subscriptions
    await send('Still there?');
    for (const sub of early) await sub.waitFor(1);

    // nothing is asked of the server: at the expiry it closes both sockets (a socket that stays
    // open would hang the test: give up a few seconds after the expiry)
    const ends = await Promise.race([Promise.all(closed), sleep(expiresAt - Date.now() + 3000).then(() => 'still open')]);
    expect(Array.isArray(ends) && ends.map((e) => e.code)).toEqual([4403, 4403]);
    for (const e of ends as { at: number }[]) expect(e.at).toBeGreaterThanOrEqual(expiresAt);
    for (const sub of early) {
      await sub.ended;
      expect(sub.errors.map((e) => (e as Closed).code)).toEqual([4403]);
    }
    // what is said after the expiry reaches neither of them
    const received = early.map((sub) => sub.events.length);
    await send('After the expiry.');
    await sleep(300);
    expect(early.map((sub) => sub.events.length)).toEqual(received);
    for (const sub of early) expect(sub.events.map((e) => e.messageAdded.content)).not.toContain('After the expiry.');

    // the expired token opens nothing new, over HTTP or WebSocket (the lazy clients reconnect with it)
    const r = await s.gql(ListVisionsDocument, {}, { token: cachedToken });
    expect(authError(r)).toEqual({ status: 401, code: 'UNAUTHENTICATED', reason: undefined });
    const late = clients.map((c) => collect(c, MessageAddedDocument, { visionId }));
    for (const sub of late) {
      await sub.ended;
      expect(sub.events).toEqual([]);
      expect(sub.errors.map((e) => (e as Closed).code)).toEqual([4403]);
    }
    await Promise.all(clients.map((c) => c.dispose()));
  });
});

describe('JWT expiry over SSE (HS256)', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ AUTH_JWT_SECRET: SECRET, AUTH_CLOCK_TOLERANCE_SECONDS: String(TOLERANCE) });
  });
  afterAll(() => s?.stop());

  it('an event stream lives as long as the token it was opened with, in both modes: ended at the expiry, later messages reach no one', async () => {
    const user = newUser();
    const longLived = await hs256({ sub: user }, nowSec() + 300);
    const visionId = (await s.gql(CreateVisionDocument, {}, { token: longLived })).data!.createVision.id;
    const send = async (content: string) => expect((await s.gql(SendMessageDocument, { input: { visionId, content } }, { token: longLived })).errors).toBeUndefined();
    // accepted for about 3 more seconds (within the tolerance)
    const exp = nowSec() - TOLERANCE + 3;
    const expiresAt = (exp + TOLERANCE) * 1000;
    const token = await hs256({ sub: user, n: 3 }, exp);

    const subs = [false, true].map((singleConnection) => {
      const client = createSseClient({
        url: `${s.url}/graphql/stream`,
        headers: { authorization: `Bearer ${token}` },
        singleConnection,
        retryAttempts: 0,
      });
      const sub = { client, contents: [] as string[], errors: [] as unknown[], endedAt: 0, ended: undefined as unknown as Promise<void> };
      sub.ended = new Promise<void>((resolve) => {
        const end = () => ((sub.endedAt = Date.now()), resolve());
        client.subscribe<{ messageAdded: { content: string } }>(
          { query: print(MessageAddedDocument), variables: { visionId } },
          { next: (r) => void (r.data && sub.contents.push(r.data.messageAdded.content)), error: (e) => (sub.errors.push(e), end()), complete: end },
        );
      });
      return sub;
    });
    await sleep(800); // both streams open and their subscriptions in place
    await send('Before the expiry.');
    expect(Date.now()).toBeLessThan(expiresAt); // the premise: both subscriptions ran before the expiry
    for (const sub of subs) {
      for (const deadline = Date.now() + 5000; !sub.contents.includes('Before the expiry.') && Date.now() < deadline; ) await sleep(50);
      expect(sub.contents).toContain('Before the expiry.');
    }

    // nothing is asked of the server: at the expiry it ends both streams (the clients, which do
    // not retry here, report that as an error); one that stays open would hang the test
    const ended = await Promise.race([Promise.all(subs.map((sub) => sub.ended)), sleep(expiresAt - Date.now() + 3000).then(() => 'still open')]);
    expect(ended).not.toBe('still open');
    for (const sub of subs) {
      expect(sub.endedAt).toBeGreaterThanOrEqual(expiresAt);
      expect(sub.errors).toHaveLength(1);
    }
    const received = subs.map((sub) => sub.contents.length);
    await send('After the expiry.');
    await sleep(300);
    expect(subs.map((sub) => sub.contents.length)).toEqual(received);
    for (const sub of subs) sub.client.dispose();
  });
});

/** A JWKS endpoint the test can break: it answers 500, holds its answer, or serves the key set. */
async function startJwks(jwk: JWK, port = 0) {
  const state = { mode: 'ok' as 'ok' | 'fail' | 'hold', requests: [] as string[] };
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const server: Server = createServer(async (_req, res) => {
    state.requests.push(state.mode);
    if (state.mode === 'fail') return res.writeHead(500).end('down');
    if (state.mode === 'hold') await released;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    state,
    release,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

describe('JWKS outages', () => {
  let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  let jwk: JWK;
  const rs256 = (sub: string, kid = 'k1', key = privateKey) =>
    new SignJWT({ sub }).setProtectedHeader({ alg: 'RS256', kid }).setExpirationTime('5m').sign(key);

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    privateKey = pair.privateKey;
    jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  });

  describe('endpoint down (nothing listens), then back', () => {
    let s: TestServer;
    let port: number;
    let jwks: Awaited<ReturnType<typeof startJwks>> | undefined;
    beforeAll(async () => {
      port = await findFreePort();
      s = await startTestServer({ AUTH_JWKS_URL: `http://127.0.0.1:${port}/jwks.json` });
    });
    afterAll(async () => {
      await s?.stop();
      await jwks?.close();
    });

    it('HTTP: INTERNAL_SERVER_ERROR, reason auth_unavailable, status 503', async () => {
      const r = await s.gql(ListVisionsDocument, {}, { token: await rs256(newUser()) });
      expect(authError(r)).toEqual({ status: 503, code: 'INTERNAL_SERVER_ERROR', reason: 'auth_unavailable' });
    });

    it('WebSocket: closes 1013, which graphql-ws clients retry; the retry connects once the endpoint is back', async () => {
      const token = await rs256(newUser());
      const codes: number[] = [];
      let up: Promise<void> | undefined;
      const c = createClient({
        url: s.url.replace(/^http/, 'ws') + '/graphql',
        webSocketImpl: WebSocket,
        lazy: false,
        retryAttempts: 3,
        // the endpoint comes back after the first refusal; the client retries once the server asks
        // the endpoint again (a second after its failure)
        retryWait: () => (up ??= startJwks(jwk, port).then((j) => void (jwks = j))).then(() => sleep(1100)),
        connectionParams: () => ({ authorization: `Bearer ${token}` }),
        on: { closed: (e) => void codes.push((e as Closed).code) },
      });
      const connected = new Promise<void>((r) => c.on('connected', () => r()));
      await connected;
      expect(codes).toEqual([1013]);
      await c.dispose();
      expect((await s.gql(ListVisionsDocument, {}, { token })).errors).toBeUndefined();
    });
  });

  describe('endpoint failing (500), slow, then serving', () => {
    let s: TestServer;
    let jwks: Awaited<ReturnType<typeof startJwks>>;
    const MAX_WS = 3;
    beforeAll(async () => {
      jwks = await startJwks(jwk);
      s = await startTestServer({ AUTH_JWKS_URL: jwks.url, MAX_WS_PER_USER: String(MAX_WS) });
    });
    afterAll(async () => {
      await s?.stop();
      await jwks?.close();
    });

    it('500 from the endpoint: HTTP 503 auth_unavailable, WebSocket 1013', async () => {
      jwks.state.mode = 'fail';
      const token = await rs256(newUser());
      const r = await s.gql(ListVisionsDocument, {}, { token });
      expect(authError(r)).toEqual({ status: 503, code: 'INTERNAL_SERVER_ERROR', reason: 'auth_unavailable' });
      const c = connect(s, token);
      expect(await outcome(c)).toMatchObject({ code: 1013 });
      await c.dispose();
      // refused at once within a second of the failure, a burst of new tokens too: the endpoint was asked once
      for (const other of await Promise.all(Array.from({ length: 10 }, () => rs256(newUser())))) {
        expect(authError(await s.gql(ListVisionsDocument, {}, { token: other }))).toEqual({ status: 503, code: 'INTERNAL_SERVER_ERROR', reason: 'auth_unavailable' });
      }
      expect(jwks.state.requests).toEqual(['fail']);
      await sleep(1100);
      expect(authError(await s.gql(ListVisionsDocument, {}, { token }))).toMatchObject({ status: 503, reason: 'auth_unavailable' });
      expect(jwks.state.requests).toEqual(['fail', 'fail']);
      await sleep(1100); // the next case needs the endpoint asked again
    });

    it('sockets that close while their token is verified do not count against the per-user cap', async () => {
      jwks.state.mode = 'hold';
      const user = newUser();
      const token = await rs256(user);
      const wsUrl = s.url.replace(/^http/, 'ws') + '/graphql';
      // each socket sends connection_init and closes at once; the server is still waiting for the key set
      const initAndClose = () =>
        new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(wsUrl, 'graphql-transport-ws');
          ws.on('open', () => {
            ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } }));
            ws.close();
          });
          ws.on('close', () => resolve());
          ws.on('error', reject);
        });
      await Promise.all(Array.from({ length: MAX_WS * 2 }, initAndClose));
      while (!jwks.state.requests.includes('hold')) await sleep(20);
      jwks.state.mode = 'ok';
      jwks.release();
      await sleep(300); // let the held verifications finish

      const clients = Array.from({ length: MAX_WS + 1 }, () => connect(s, token));
      const results: Outcome[] = [];
      for (const c of clients) results.push(await outcome(c));
      expect(results).toEqual([...Array(MAX_WS).fill('connected'), { code: 4429, reason: 'Too many connections for this user' }]);
      await Promise.all(clients.map((c) => c.dispose()));
    });

    it('a token whose kid is not in the key set stays UNAUTHENTICATED', async () => {
      const other = await generateKeyPair('RS256');
      const r = await s.gql(ListVisionsDocument, {}, { token: await rs256(newUser(), 'k-unknown', other.privateKey) });
      expect(authError(r)).toEqual({ status: 401, code: 'UNAUTHENTICATED', reason: undefined });
      expect((await s.gql(ListVisionsDocument, {}, { token: await rs256(newUser()) })).errors).toBeUndefined();
    });
  });
});
