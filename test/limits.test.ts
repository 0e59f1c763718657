import { CreateVisionDocument } from './generated/graphql';
import { errorCode, newUser, startTestServer, type TestServer } from './support/server';

describe('document limits (graphql-armor) and introspection', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ GRAPHQL_MAX_DEPTH: '6', GRAPHQL_MAX_ALIASES: '3', GRAPHQL_MAX_COST: '400', GRAPHQL_INTROSPECTION: 'false' });
  });
  afterAll(() => s?.stop());

  it('a document deeper than the limit is refused with a clear message', async () => {
    const r = await s.gql('{ visions { edges { node { messages { edges { node { file { id } } } } } } } }', undefined, { user: newUser() });
    expect(errorCode(r)).toBe('BAD_USER_INPUT');
    expect(r.errors![0]!.message).toMatch(/depth/i);
  });

  it('too many aliases are refused', async () => {
    const r = await s.gql('{ a: visions { totalCount } b: visions { totalCount } c: visions { totalCount } d: visions { totalCount } }', undefined, { user: newUser() });
    expect(errorCode(r)).toBe('BAD_USER_INPUT');
    expect(r.errors![0]!.message).toMatch(/alias/i);
  });

  it('an expensive document is refused by cost', async () => {
    // shallow (depth 4) but wide: only the cost limit can refuse it
    const wide = Array.from({ length: 150 }, () => 'title createdAt').join(' ');
    const r = await s.gql(`{ visions { edges { node { ${wide} } } } }`, undefined, { user: newUser() });
    expect(errorCode(r)).toBe('BAD_USER_INPUT');
    expect(r.errors![0]!.message).toMatch(/cost/i);
  });

  it('a query within the limits passes', async () => {
    const user = newUser();
    await s.gql(CreateVisionDocument, {}, { user });
    const r = await s.gql('{ visions { totalCount edges { node { id lastMessage { id } } } } }', undefined, { user });
    expect(r.errors).toBeUndefined();
    expect(r.data).toMatchObject({ visions: { totalCount: 1 } });
  });

  it('introspection can be switched off', async () => {
    const r = await s.gql('{ __schema { types { name } } }', undefined, { user: newUser() });
    expect(errorCode(r)).toBe('BAD_USER_INPUT');
    expect(r.errors![0]!.message).toMatch(/introspection/i);
  });

  it('a syntax error and a batched request are refused as bad input', async () => {
    const r = await s.gql('{ visions { ', undefined, { user: newUser() });
    expect(errorCode(r)).toBe('BAD_USER_INPUT');
    const batch = await fetch(s.graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': newUser() },
      body: JSON.stringify([{ query: '{ visions { totalCount } }' }, { query: '{ visions { totalCount } }' }]),
    });
    expect(batch.status).toBe(400);
  });
});

describe('introspection is on by default', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s?.stop());
  it('answers the playground introspection', async () => {
    const r = await s.gql('{ __schema { mutationType { fields { name } } } }');
    const names = (r.data as { __schema: { mutationType: { fields: { name: string }[] } } }).__schema.mutationType.fields.map((f) => f.name);
    expect(names).toEqual(expect.arrayContaining(['createVision', 'renameVision', 'setVisionStatus', 'sendMessage', 'retryReply', 'stopReply']));
  });
});
