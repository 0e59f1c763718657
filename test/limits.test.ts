import type { Client } from 'graphql-ws';
import { CreateVisionDocument } from './generated/graphql';
import { errorCode, newUser, startTestServer, type TestServer } from './support/server';
import { wsClient } from './support/ws';

/** A graphql-armor refusal: BAD_USER_INPUT, HTTP 400, a message that says which limit and is no "Syntax Error". */
function expectLimit(r: { status: number; errors?: { message: string }[] }, limit: RegExp) {
  expect({ status: r.status, message: r.errors?.[0]?.message }).toEqual({ status: 400, message: expect.stringMatching(limit) });
  expect(r.errors![0]!.message).not.toMatch(/syntax/i);
}

describe('document limits (graphql-armor) and introspection', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ GRAPHQL_MAX_DEPTH: '6', GRAPHQL_MAX_ALIASES: '3', GRAPHQL_MAX_COST: '400', GRAPHQL_INTROSPECTION: 'false' });
  });
  afterAll(() => s?.stop());

  it('a document deeper than the limit is refused with a clear message', async () => {
    const r = await s.gql('{ visions { edges { node { messages { edges { node { file { id } } } } } } } }', undefined, { user: newUser() });
    expect(errorCode(r)).toBe('BAD_USER_INPUT');
    expectLimit(r, /^Query depth limit of 6 exceeded/);
  });

  it('depth counts fields, not fragments: a fragment spread or inline fragment is no level', async () => {
    const user = newUser();
    const fragments = `
      fragment F on File { id }
      fragment M on VisionMessage { file { ...F } }
      fragment V on Vision { messages { edges { node { ...M } } } }`;
    // visions > edges > node > messages > edges > node > file > id: 8 fields, however it is split
    const deep = await s.gql(`${fragments} { visions { edges { node { ...V } } } }`, undefined, { user });
    expectLimit(deep, /^Query depth limit of 6 exceeded, found 8\.$/);
    // visions > edges > node > lastMessage > file > id: 6 fields through four fragments and an inline one
    const ok = await s.gql(
      `fragment F on File { id }
       fragment M on VisionMessage { file { ...F } }
       fragment V on Vision { lastMessage { ...M } }
       fragment E on VisionEdge { node { ...V } }
       { visions { ... on VisionConnection { edges { ...E } } } }`,
      undefined,
      { user },
    );
    expect([ok.status, ok.errors]).toEqual([200, undefined]);
  });

  it('too many aliases are refused', async () => {
    const r = await s.gql('{ a: visions { totalCount } b: visions { totalCount } c: visions { totalCount } d: visions { totalCount } }', undefined, { user: newUser() });
    expect(errorCode(r)).toBe('BAD_USER_INPUT');
    expectLimit(r, /^Aliases limit of 3 exceeded/);
  });

  it('an expensive document is refused by cost', async () => {
    // shallow and short: only the cost of its page (100 items × 5 values) can refuse it
    const r = await s.gql('{ visions(first: 100) { edges { node { title createdAt } } } }', undefined, { user: newUser() });
    expect(errorCode(r)).toBe('BAD_USER_INPUT');
    expectLimit(r, /^Query Cost limit of 400 exceeded, found 500\.$/);
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
    expect(r.status).toBe(400);
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

// every field of each type, as a screen that shows everything would ask for them
const FILE = 'id filename mime size createdAt';
const MESSAGE = `id visionId sender type state content payload createdAt file { ${FILE} }`;
const USAGE = 'calls promptTokens completionTokens totalTokens';
const VISION = `id title status createdAt updatedAt meta lastMessage { ${MESSAGE} } tokenUsage { ${USAGE} }`;
const PAGE_INFO = 'pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount';
const messagesPage = (args: string) => `query ($id: ID!) { vision(id: $id) { ${VISION} messages(${args}) { edges { cursor node { ${MESSAGE} } } ${PAGE_INFO} } } }`;
const visionsPage = (n: number) => `{ visions(first: ${n}) { edges { cursor node { ${VISION} } } ${PAGE_INFO} } }`;

/** One screen asking for everything at once, as Apollo Client sends it: fragments, __typename on every object. */
const SCREEN = `
fragment File on File { __typename ${FILE} }
fragment Message on VisionMessage { __typename id visionId sender type state content payload createdAt file { ...File } }
fragment Usage on TokenUsage { __typename ${USAGE} }
fragment Vision on Vision { __typename id title status createdAt updatedAt meta lastMessage { ...Message } tokenUsage { ...Usage } }
fragment Page on PageInfo { __typename hasNextPage hasPreviousPage startCursor endCursor }
query Screen($id: ID!) {
  visions(first: 200) { __typename totalCount pageInfo { ...Page } edges { __typename cursor node { ...Vision } } }
  vision(id: $id) { ...Vision messages(last: 200) { __typename totalCount pageInfo { ...Page } edges { __typename cursor node { ...Message } } } }
  tokenUsage { ...Usage }
}`;

/** A page inside a page: the latest MAX messages of each of MAX visions (40 000 messages). */
const NESTED = '{ visions(first: 200) { edges { node { messages(last: 200) { edges { node { id content } } } } } } }';

/** One operation over graphql-ws: its last result, or the errors of its `error` message. */
function overWs(c: Client, query: string, variables?: Record<string, unknown>): Promise<{ data?: any; errors?: { message: string; extensions?: Record<string, unknown> }[] }> {
  return new Promise((resolve, reject) => {
    let last = {};
    c.subscribe(
      { query, variables },
      {
        next: (r) => (last = r),
        error: (e) => (Array.isArray(e) ? resolve({ errors: e }) : reject(new Error(`socket closed: ${(e as { code?: number }).code}`))),
        complete: () => resolve(last),
      },
    );
  });
}

describe('the limits agree: the largest documented page passes (MAX_PAGE_SIZE 200, GRAPHQL_MAX_DEPTH 10, default GRAPHQL_MAX_COST)', () => {
  const MAX = 200;
  let s: TestServer;
  let user: string;
  let visionId: string;
  let ws: Client;
  beforeAll(async () => {
    s = await startTestServer();
    user = newUser('limits');
    visionId = (await s.gql(CreateVisionDocument, { input: { title: 'Full pages' } }, { user })).data!.createVision.id;
    // MAX + 9 more visions and messages, so that every page is full; the newest message shows a file
    await s.sql(
      `insert into visions (id, userid, title, createdat, updatedat)
       select gen_random_uuid(), ?, 'Vision ' || i, now() - i * interval '1 minute', now() - i * interval '1 minute' from generate_series(1, ${MAX + 9}) i`,
      [user],
    );
    await s.sql(
      `insert into vision_messages (id, visionid, sender, content, createdat)
       select gen_random_uuid(), ?, case when i % 2 = 0 then 'assistant' else 'user' end, 'message ' || i, now() - (${MAX + 20} - i) * interval '1 second'
       from generate_series(1, ${MAX + 9}) i`,
      [visionId],
    );
    const [file] = await s.sql<{ id: string }>(
      `insert into files (id, visionid, storagepath, filename, mime, size) values (gen_random_uuid(), ?, '/f/plan.pdf', 'plan.pdf', 'application/pdf', 1234) returning id`,
      [visionId],
    );
    await s.sql(
      `insert into vision_messages (id, visionid, sender, messagetype, content, payload) values (gen_random_uuid(), ?, 'assistant', 'file_result', 'Your plan', ?::jsonb)`,
      [visionId, JSON.stringify({ fileid: file!.id, filename: 'plan.pdf' })],
    );
    ws = wsClient(s.url, { user });
  });
  afterAll(async () => {
    await ws?.dispose();
    await s?.stop();
  });

  it('vision { messages(last: MAX) } and messages(first: MAX) with every field: a full page, over HTTP and WebSocket', async () => {
    for (const args of [`last: ${MAX}`, `first: ${MAX}`]) {
      const http = await s.gql<any, any>(messagesPage(args), { id: visionId }, { user });
      expect([args, http.status, http.errors]).toEqual([args, 200, undefined]);
      const page = http.data.vision.messages;
      expect(page.edges).toHaveLength(MAX);
      expect(page.totalCount).toBe(MAX + 10);
      expect(http.data.vision.lastMessage.file).toEqual({ id: expect.any(String), filename: 'plan.pdf', mime: 'application/pdf', size: 1234, createdAt: expect.any(String) });
      if (args.startsWith('last')) expect(page.edges[MAX - 1].node.file.filename).toBe('plan.pdf');
      expect(await overWs(ws, messagesPage(args), { id: visionId })).toEqual({ data: http.data });
    }
    // and MAX is the largest page: one more is the resolver's refusal, not the cost limit's
    const over = await s.gql(messagesPage(`last: ${MAX + 1}`), { id: visionId }, { user });
    expect(errorCode(over)).toBe('BAD_USER_INPUT');
    expect(over.errors![0]!.message).not.toMatch(/cost/i);
  });

  it('visions(first: MAX) with every field, lastMessage and tokenUsage included: a full page, over HTTP and WebSocket', async () => {
    const http = await s.gql<any, any>(visionsPage(MAX), undefined, { user });
    expect([http.status, http.errors]).toEqual([200, undefined]);
    expect(http.data.visions.edges).toHaveLength(MAX);
    expect(http.data.visions.totalCount).toBe(MAX + 10);
    expect(http.data.visions.pageInfo.hasNextPage).toBe(true);
    expect(await overWs(ws, visionsPage(MAX))).toEqual({ data: http.data });
  });

  it('one screen asking for both largest pages at once, through fragments and with __typename everywhere, passes', async () => {
    const http = await s.gql<any, any>(SCREEN, { id: visionId }, { user });
    expect([http.status, http.errors]).toEqual([200, undefined]);
    expect(http.data.visions.edges).toHaveLength(MAX);
    expect(http.data.vision.messages.edges).toHaveLength(MAX);
    expect(await overWs(ws, SCREEN, { id: visionId })).toEqual({ data: http.data });
  });

  it('a page inside a page is refused by cost: BAD_USER_INPUT, HTTP 400, a clear message, the same over WebSocket', async () => {
    const http = await s.gql(NESTED, undefined, { user });
    expect(http.errors).toHaveLength(1);
    expect(http.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'GRAPHQL_VALIDATION_FAILED' });
    expectLimit(http, /^Query Cost limit of 30000 exceeded, found \d+\.$/);
    expect(http.data).toBeUndefined();
    const overSocket = await overWs(ws, NESTED);
    expect(overSocket.errors!.map((e) => [e.message, e.extensions?.code])).toEqual([[http.errors![0]!.message, 'BAD_USER_INPUT']]);
  });
});

describe('GRAPHQL_MAX_COST follows MAX_PAGE_SIZE', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ MAX_PAGE_SIZE: '500' });
  });
  afterAll(() => s?.stop());

  it('with MAX_PAGE_SIZE=500 the page of 500 visions with every field still passes', async () => {
    const r = await s.gql<any, any>(visionsPage(500), undefined, { user: newUser('limits') });
    expect([r.status, r.errors, r.data.visions.totalCount]).toEqual([200, undefined, 0]);
  });
});
