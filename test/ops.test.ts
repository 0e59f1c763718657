import { newUser, startTestServer, type TestServer } from './support/server';
import { CreateVisionDocument } from './generated/graphql';

describe('operations endpoints', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s?.stop());

  it('GET /healthz answers while the process is up', async () => {
    const r = await fetch(`${s.url}/healthz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: 'ok' });
  });

  it('GET /readyz answers 200 when the database is reachable', async () => {
    const r = await fetch(`${s.url}/readyz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: 'ready' });
  });

  it('GraphQL over GET works for queries (with the CSRF-safe header)', async () => {
    const user = newUser();
    await s.gql(CreateVisionDocument, {}, { user });
    const q = encodeURIComponent('{ visions { totalCount } }');
    const r = await fetch(`${s.graphqlUrl}?query=${q}`, { headers: { 'x-user-id': user, 'apollo-require-preflight': 'true' } });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ data: { visions: { totalCount: 1 } } });
  });
});

describe('readiness when the database is gone', () => {
  it('GET /readyz answers 503', async () => {
    const s = await startTestServer();
    await s.db.orm.close(true);
    const r = await fetch(`${s.url}/readyz`);
    expect(r.status).toBe(503);
    expect(await r.json()).toEqual({ status: 'unavailable', reason: 'database' });
    await s.server.stop();
  });
});
