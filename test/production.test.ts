import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { SignJWT } from 'jose';
import { ListVisionsDocument } from './generated/graphql';
import { createScratchDatabase } from './support/db';
import { errorCode, newUser, startTestServer, type TestServer } from './support/server';

const SECRET = 'production-secret-production-secret-0123';
const entry = resolve(__dirname, '../dist/src/index.js');

describe('production mode', () => {
  it('refuses to start without JWT settings (the dev header is never accepted)', () => {
    expect(existsSync(entry)).toBe(true);
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', NODE_ENV: 'production', OPENAI_API_KEY: 'k', DATABASE_URL: 'postgresql://127.0.0.1:1/none' };
    const r = spawnSync(process.execPath, [entry], { env, encoding: 'utf8', timeout: 20_000 });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('AUTH_JWT_SECRET or AUTH_JWKS_URL');
  });

  it('refuses an unknown NODE_ENV (a typo such as "prod" must not mean development)', () => {
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', NODE_ENV: 'prod', DATABASE_URL: 'postgresql://127.0.0.1:1/none' };
    const r = spawnSync(process.execPath, [entry], { env, encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(78);
    expect(r.stderr).toContain('NODE_ENV must be production, development or test; got "prod"');
  });

  describe('with JWT', () => {
    let s: TestServer;
    let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
    beforeAll(async () => {
      // its own database: one test breaks it on purpose
      scratch = await createScratchDatabase();
      s = await startTestServer({ NODE_ENV: 'production', AUTH_JWT_SECRET: SECRET, OPENAI_API_KEY: 'k', DATABASE_URL: scratch.url });
    });
    afterAll(async () => {
      await s?.stop();
      await scratch?.drop();
    });

    it('rejects the x-user-id header', async () => {
      const r = await s.gql(ListVisionsDocument, {}, { user: newUser() });
      expect(errorCode(r)).toBe('UNAUTHENTICATED');
    });

    it('answers errors without stack traces, and internal errors without SQL or details', async () => {
      const t = await new SignJWT({ sub: newUser() }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(SECRET));
      const bad = await s.gql(ListVisionsDocument, { first: 500 }, { token: t });
      expect(errorCode(bad)).toBe('BAD_USER_INPUT');
      expect(JSON.stringify(bad.errors)).not.toContain('stacktrace');
      await s.sql('drop table tokenscount');
      const broken = await s.gql('{ tokenUsage { calls } }', undefined, { token: t });
      expect(broken.errors).toEqual([{ message: 'Internal server error', path: ['tokenUsage'], extensions: { code: 'INTERNAL_SERVER_ERROR' } }]);
      const text = JSON.stringify(broken);
      expect(text).not.toMatch(/tokenscount|select|relation|stack/i);
    });

    it('does not suggest field names', async () => {
      const t = await new SignJWT({ sub: newUser() }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(SECRET));
      const r = await s.gql('{ vision { titel } }', undefined, { token: t });
      expect(errorCode(r)).toBe('BAD_USER_INPUT');
      expect(JSON.stringify(r.errors)).not.toContain('Did you mean');
    });
  });
});
