import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { CreateVisionDocument, GetVisionDocument, ListVisionsDocument } from './generated/graphql';
import { errorCode, newUser, startTestServer, type TestServer } from './support/server';
import { collect, wsClient } from './support/ws';
import { MessageAddedDocument } from './generated/graphql';

const SECRET = 'a-test-secret-that-is-at-least-32-characters-long';
const key = new TextEncoder().encode(SECRET);

function token(claims: Record<string, unknown>, opts: { exp?: string | number; aud?: string; iss?: string; secret?: Uint8Array } = {}) {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  jwt = jwt.setExpirationTime(opts.exp ?? '5m');
  if (opts.aud) jwt = jwt.setAudience(opts.aud);
  if (opts.iss) jwt = jwt.setIssuer(opts.iss);
  return jwt.sign(opts.secret ?? key);
}

describe('JWT identity (HS256, issuer and audience)', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ AUTH_JWT_SECRET: SECRET, AUTH_JWT_AUDIENCE: 'vision-path', AUTH_JWT_ISSUER: 'https://auth.example' });
  });
  afterAll(() => s?.stop());
  const good = (sub: string, extra: Record<string, unknown> = {}) =>
    token({ sub, ...extra }, { aud: 'vision-path', iss: 'https://auth.example' });

  it('a valid token identifies the user by sub', async () => {
    const user = newUser();
    const created = await s.gql(CreateVisionDocument, {}, { token: await good(user) });
    expect(created.errors).toBeUndefined();
    const [row] = await s.sql(`select userid from visions where id = ?`, [created.data!.createVision.id]);
    expect(row!.userid).toBe(user);
    const other = await s.gql(GetVisionDocument, { id: created.data!.createVision.id }, { token: await good(newUser()) });
    expect(other.data).toEqual({ vision: null });
  });

  const rejected: [string, () => Promise<string>][] = [
    ['expired', () => token({ sub: 'u' }, { aud: 'vision-path', iss: 'https://auth.example', exp: Math.floor(Date.now() / 1000) - 60 })],
    ['wrong signature', () => token({ sub: 'u' }, { aud: 'vision-path', iss: 'https://auth.example', secret: new TextEncoder().encode('x'.repeat(40)) })],
    ['wrong audience', () => token({ sub: 'u' }, { aud: 'someone-else', iss: 'https://auth.example' })],
    ['wrong issuer', () => token({ sub: 'u' }, { aud: 'vision-path', iss: 'https://evil.example' })],
    ['no sub', () => token({}, { aud: 'vision-path', iss: 'https://auth.example' })],
    ['garbage', async () => 'not.a.jwt'],
  ];
  for (const [name, make] of rejected) {
    it(`${name} → UNAUTHENTICATED (401), nothing stored`, async () => {
      const r = await s.gql(ListVisionsDocument, {}, { token: await make() });
      expect(r.status).toBe(401);
      expect(errorCode(r)).toBe('UNAUTHENTICATED');
      const created = await s.gql(CreateVisionDocument, {}, { token: await make() });
      expect(errorCode(created)).toBe('UNAUTHENTICATED');
      const [{ n }] = (await s.sql(`select count(*)::int as n from visions where userid = 'u'`)) as [{ n: number }];
      expect(n).toBe(0);
    });
  }

  it('missing identity → UNAUTHENTICATED for every root field', async () => {
    for (const q of ['{ visions { totalCount } }', '{ tokenUsage { calls } }', 'mutation { createVision { id } }']) {
      const r = await s.gql(q);
      expect([q, errorCode(r)]).toEqual([q, 'UNAUTHENTICATED']);
    }
  });

  it('a malformed Authorization header → UNAUTHENTICATED', async () => {
    const r = await s.gql(ListVisionsDocument, {}, { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    expect(errorCode(r)).toBe('UNAUTHENTICATED');
  });

  it('the development header is refused once JWT is configured', async () => {
    const r = await s.gql(ListVisionsDocument, {}, { user: newUser() });
    expect(errorCode(r)).toBe('UNAUTHENTICATED');
  });

  it('introspection needs no identity', async () => {
    const r = await s.gql('{ __schema { queryType { name } } }');
    expect(r.data).toEqual({ __schema: { queryType: { name: 'Query' } } });
  });

  it('WebSocket: a valid token connects; no identity closes 4401; a bad token closes 4403', async () => {
    const user = newUser();
    const v = (await s.gql(CreateVisionDocument, {}, { token: await good(user) })).data!.createVision;
    const ok = wsClient(s.url, { token: await good(user) });
    const sub = collect(ok, MessageAddedDocument, { visionId: v.id });
    const opened = await new Promise<boolean>((resolve) => {
      ok.on('connected', () => resolve(true));
      ok.on('closed', () => resolve(false));
    });
    expect(opened).toBe(true);
    sub.stop();
    await ok.dispose();

    for (const [auth, code] of [
      [{}, 4401],
      [{ token: 'bad.token.here' }, 4403],
      [{ user: newUser() }, 4403],
    ] as const) {
      const c = wsClient(s.url, auth);
      const closed = new Promise<number>((resolve) => c.on('closed', (e) => resolve((e as { code: number }).code)));
      const bad = collect(c, MessageAddedDocument, { visionId: v.id });
      expect(await closed).toBe(code);
      await bad.ended;
      expect(bad.events).toEqual([]);
      await c.dispose();
    }
  });
});

describe('JWT identity via JWKS (RS256) and a custom user-id claim', () => {
  let jwks: Server;
  let s: TestServer;
  let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    privateKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    jwks = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const { port } = jwks.address() as AddressInfo;
    s = await startTestServer({ AUTH_JWKS_URL: `http://127.0.0.1:${port}/jwks.json`, AUTH_USER_ID_CLAIM: 'uid' });
  });
  afterAll(async () => {
    await s?.stop();
    await new Promise((r) => jwks?.close(r));
  });

  it('accepts a token signed by a key of the set and reads the configured claim', async () => {
    const user = newUser();
    const t = await new SignJWT({ uid: user, sub: 'ignored' }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setExpirationTime('5m').sign(privateKey);
    const created = await s.gql(CreateVisionDocument, {}, { token: t });
    expect(created.errors).toBeUndefined();
    const [row] = await s.sql(`select userid from visions where id = ?`, [created.data!.createVision.id]);
    expect(row!.userid).toBe(user);
  });

  it('refuses an HS256 token when only JWKS is configured', async () => {
    const r = await s.gql(ListVisionsDocument, {}, { token: await token({ uid: 'x' }) });
    expect(errorCode(r)).toBe('UNAUTHENTICATED');
  });
});
