/**
 * The HTTP query lane (src/graphql/http-lane.ts) answers queries without Apollo's request
 * pipeline. Each request here goes to two servers on the same database, one with the lane and one
 * without it (GRAPHQL_QUERY_LANE=false: Apollo answers everything), and the two answers must be
 * the same: status, media type, the `x-sql-statements` header and the body (stack traces aside,
 * which name different frames). The log line says which path answered, so each case also checks
 * that the lane took the requests it should and left the others to Apollo.
 */
import { SignJWT } from 'jose';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createScratchDatabase } from './support/db';
import { startFakeOpenAI } from './support/fake-openai';
import { newUser, startTestServer, type TestServer } from './support/server';

const SECRET = 'lane-secret-lane-secret-lane-secret-0123';

interface Answer {
  status: number;
  contentType: string | null;
  sqlStatements: string | null;
  retryAfter: string | null;
  body: unknown;
}

interface Pair {
  lane: TestServer;
  apollo: TestServer;
  /** Log lines of the lane's server since the last `send`. */
  laneLog: Record<string, any>[];
}

async function startPair(env: Record<string, string> = {}): Promise<Pair> {
  const laneLog: Record<string, any>[] = [];
  const lane = await startTestServer(env, { onLog: (e) => e.msg === 'graphql' && laneLog.push(e) });
  const apollo = await startTestServer({ ...env, GRAPHQL_QUERY_LANE: 'false' });
  return { lane, apollo, laneLog };
}

/** Stack traces name other frames on each path; everything else must match. */
function withoutStacks(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutStacks);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([k]) => k !== 'stacktrace')
        .map(([k, v]) => [k, withoutStacks(v)]),
    );
  }
  return value;
}

async function post(s: TestServer, body: unknown, headers: Record<string, string>): Promise<Answer> {
  const res = await fetch(s.graphqlUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // compared as text
  }
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    sqlStatements: res.headers.get('x-sql-statements'),
    retryAfter: res.headers.get('retry-after'),
    body: withoutStacks(parsed),
  };
}

/** The same request to both servers: both answers, and whether the lane answered it. */
async function send(p: Pair, body: unknown, headers: Record<string, string> = {}) {
  p.laneLog.length = 0;
  const viaLane = await post(p.lane, body, headers);
  const viaApollo = await post(p.apollo, body, headers);
  const line = p.laneLog.at(-1);
  return { viaLane, viaApollo, laned: line?.lane === true, line };
}

const user = (id: string) => ({ 'x-user-id': id });

describe('HTTP query lane: the same answers as Apollo', () => {
  let p: Pair;
  let owner: string;
  let visionId: string;
  beforeAll(async () => {
    p = await startPair();
    owner = newUser('lane');
    const created = await p.apollo.gql<{ createVision: { id: string } }, unknown>('mutation { createVision(input: { title: "lane" }) { id } }', undefined, {
      user: owner,
    });
    visionId = created.data!.createVision.id;
    await p.apollo.sql(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
       select gen_random_uuid(), ?::uuid, case when i % 2 = 0 then 'user' else 'assistant' end, 'text', 'message ' || i, 'complete', now() - (10 - i) * interval '1 second'
       from generate_series(1, 6) i`,
      [visionId],
    );
  });
  afterAll(async () => {
    await p?.lane.stop();
    await p?.apollo.stop();
  });

  const history = 'query History($id: ID!, $last: Int) { vision(id: $id) { id title status messages(last: $last) { edges { node { id content sender createdAt } } pageInfo { hasPreviousPage } } } }';

  it('answers a list and a history read on the lane, as Apollo does', async () => {
    const list = await send(p, { query: '{ visions(first: 5) { totalCount edges { node { id title lastMessage { content } tokenUsage { calls } } } } }' }, user(owner));
    expect(list.laned).toBe(true);
    expect(list.viaLane).toEqual(list.viaApollo);
    expect(list.viaLane.status).toBe(200);
    expect(list.viaLane.body).toMatchObject({ data: { visions: { totalCount: 1 } } });
    // the page, and its totalCount
    expect(list.viaLane.sqlStatements).toBe('2');

    const read = await send(p, { query: history, variables: { id: visionId, last: 4 }, operationName: 'History' }, user(owner));
    expect(read.laned).toBe(true);
    expect(read.viaLane).toEqual(read.viaApollo);
    const edges = (read.viaLane.body as any).data.vision.messages.edges;
    expect(edges.map((e: any) => e.node.content)).toEqual(['message 3', 'message 4', 'message 5', 'message 6']);
    expect(read.line).toMatchObject({ op: 'History', type: 'query', userId: owner, sql: 1 });
  });

  it('answers introspection (GRAPHQL_INTROSPECTION on) on the lane, as Apollo does', async () => {
    const r = await send(p, { query: '{ __schema { queryType { name } } __type(name: "Vision") { fields { name } } }' }, {});
    expect(r.laned).toBe(true);
    expect(r.viaLane).toEqual(r.viaApollo);
    expect((r.viaLane.body as any).data.__schema.queryType.name).toBe('Query');
  });

  it('answers another user, and a missing vision, with null as Apollo does', async () => {
    const other = await send(p, { query: history, variables: { id: visionId } }, user(newUser('lane-other')));
    expect(other.laned).toBe(true);
    expect(other.viaLane).toEqual(other.viaApollo);
    expect(other.viaLane.body).toEqual({ data: { vision: null } });
  });

  it('answers errors of execution on the lane: not authenticated, bad arguments, bad ids', async () => {
    for (const [body, headers] of [
      [{ query: '{ visions { totalCount } }' }, {}],
      [{ query: history, variables: { id: visionId, last: -1 } }, user(owner)],
      [{ query: history, variables: { id: 'not-an-id' } }, user(owner)],
      [{ query: 'query Big($n: Int) { visions(first: $n) { totalCount } }', variables: { n: 100000 } }, user(owner)],
    ] as const) {
      const r = await send(p, body, headers);
      expect(r.laned).toBe(true);
      expect(r.viaLane).toEqual(r.viaApollo);
      expect((r.viaLane.body as any).errors?.length).toBeGreaterThan(0);
      expect(r.line?.errorCode).toBeDefined();
    }
  });

  it('answers variables that do not fit their types with 400 BAD_USER_INPUT, as Apollo does', async () => {
    for (const variables of [{}, { id: visionId, last: 'four' }, { id: { not: 'an id' } }]) {
      const r = await send(p, { query: history, variables }, user(owner));
      expect(r.laned).toBe(true);
      expect(r.viaLane).toEqual(r.viaApollo);
      expect(r.viaLane.status).toBe(400);
      expect((r.viaLane.body as any).errors[0].extensions.code).toBe('BAD_USER_INPUT');
    }
  });

  it("takes Apollo's media type for every Accept, and leaves one it cannot serve to Apollo (406)", async () => {
    for (const accept of ['application/graphql-response+json', 'application/graphql-response+json, application/json;q=0.9', '*/*', 'application/json', 'application/*']) {
      const r = await send(p, { query: '{ visions { totalCount } }' }, { ...user(owner), accept });
      expect(r.laned).toBe(true);
      expect(r.viaLane).toEqual(r.viaApollo);
    }
    expect((await send(p, { query: '{ visions { totalCount } }' }, { ...user(owner), accept: 'application/graphql-response+json' })).viaLane.contentType).toBe(
      'application/graphql-response+json; charset=utf-8',
    );
    const refused = await send(p, { query: '{ visions { totalCount } }' }, { ...user(owner), accept: 'text/html' });
    expect(refused.laned).toBe(false);
    expect(refused.viaLane).toEqual(refused.viaApollo);
    expect(refused.viaLane.status).toBe(406);
  });

  it('puts the context\'s warnings into extensions.warnings, as Apollo does', async () => {
    const r = await send(p, { query: '{ searchMessages(query: "message") { edges { node { snippet message { content } } } } }' }, user(owner));
    expect(r.laned).toBe(true);
    expect(r.viaLane).toEqual(r.viaApollo);
    expect((r.viaLane.body as any).data.searchMessages.edges.length).toBeGreaterThan(0);
    expect((r.viaLane.body as any).extensions.warnings[0].code).toBe('SEARCH_FELL_BACK_TO_TEXT');
  });

  it('leaves to Apollo what it does not serve, and the answers stay the same', async () => {
    const cases: [unknown, Record<string, string>][] = [
      // documents that do not parse or validate, unknown and ambiguous operations
      [{ query: '{ visions { totalCount ' }, user(owner)],
      [{ query: '{ visions { nope } }' }, user(owner)],
      [{ query: history, operationName: 'Other', variables: { id: visionId } }, user(owner)],
      [{ query: 'query A { visions { totalCount } } query B { visions { totalCount } }' }, user(owner)],
      // a subscription over HTTP
      [{ query: 'subscription { messageAdded(visionId: "x") { id } }' }, user(owner)],
      // bodies Apollo refuses, APQ, an empty query
      [{ query: '{ visions { totalCount } }', variables: '{}' }, user(owner)],
      [{ query: '{ visions { totalCount } }', variables: [1] }, user(owner)],
      [{ query: '{ visions { totalCount } }', operationName: 5 }, user(owner)],
      [{ query: 5 }, user(owner)],
      [{ query: '' }, user(owner)],
      [{ extensions: { persistedQuery: { version: 1, sha256Hash: 'a'.repeat(64) } } }, user(owner)],
      // a credential that fails: Apollo answers from the lane's context, authenticated once
      [{ query: '{ visions { totalCount } }' }, { authorization: 'Bearer not.a.token' }],
    ];
    for (const [body, headers] of cases) {
      const r = await send(p, body, headers);
      expect({ body, laned: r.laned }).toEqual({ body, laned: false });
      expect({ body, answer: r.viaLane }).toEqual({ body, answer: r.viaApollo });
      expect(r.viaLane.status).toBeGreaterThanOrEqual(200);
    }
  });
});

/** Ids and times differ between two servers' writes; the rest of a mutation's answer must not. */
function withoutIdsAndTimes(value: unknown): unknown {
  if (typeof value === 'string') {
    return value
      .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<id>')
      .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<time>');
  }
  if (Array.isArray(value)) return value.map(withoutIdsAndTimes);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withoutIdsAndTimes(v)]));
  return value;
}

describe('HTTP query lane: mutations', () => {
  let p: Pair;
  let owner: string;
  beforeAll(async () => {
    p = await startPair();
    owner = newUser('lane-mutation');
  });
  afterAll(async () => {
    await p?.lane.stop();
    await p?.apollo.stop();
  });

  /** A vision of `owner` for each server, in the same state: a mutation's effects stay on its own side. */
  async function visionPair(status?: 'FROZEN' | 'DELETED'): Promise<{ lane: string; apollo: string }> {
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await p.apollo.gql<{ createVision: { id: string } }, unknown>('mutation { createVision(input: { title: "pair" }) { id } }', undefined, { user: owner });
      ids.push(r.data!.createVision.id);
      if (status) await p.apollo.gql(`mutation { setVisionStatus(id: "${ids[i]}", status: ${status}) { id } }`, undefined, { user: owner });
    }
    return { lane: ids[0], apollo: ids[1] };
  }

  /** One mutation per server, each on its own vision (`$vision` in the variables), both answers with ids and times masked. */
  async function sendEach(body: { query: string; variables?: Record<string, unknown>; operationName?: string }, headers: Record<string, string>, visions?: { lane: string; apollo: string }) {
    const on = (id?: string) => (visions ? { ...body, variables: JSON.parse(JSON.stringify(body.variables ?? {}).split('$vision').join(id!)) } : body);
    p.laneLog.length = 0;
    const viaLane = await post(p.lane, on(visions?.lane), headers);
    const viaApollo = await post(p.apollo, on(visions?.apollo), headers);
    const line = p.laneLog.at(-1);
    return { viaLane: withoutIdsAndTimes(viaLane) as Answer, viaApollo: withoutIdsAndTimes(viaApollo) as Answer, laned: line?.lane === true, line };
  }

  const sendDoc = 'mutation Send($input: SendMessageInput!) { sendMessage(input: $input) { userMessage { id content sender state } assistantMessage { id content sender state } } }';

  it('answers createVision, renameVision and setVisionStatus on the lane, as Apollo does', async () => {
    const created = await sendEach({ query: 'mutation { createVision(input: { title: "on the lane" }) { id title status createdAt } }' }, user(owner));
    expect(created.laned).toBe(true);
    expect(created.line).toMatchObject({ type: 'mutation', userId: owner, lane: true });
    expect(created.viaLane).toEqual(created.viaApollo);
    expect(created.viaLane.body).toEqual({ data: { createVision: { id: '<id>', title: 'on the lane', status: 'ACTIVE', createdAt: '<time>' } } });
    expect(created.viaLane.sqlStatements).not.toBeNull();

    const visions = await visionPair();
    const renamed = await sendEach({ query: 'mutation R($id: ID!) { renameVision(id: $id, title: "renamed") { id title } }', variables: { id: '$vision' } }, user(owner), visions);
    expect(renamed.laned).toBe(true);
    expect(renamed.viaLane).toEqual(renamed.viaApollo);
    const frozen = await sendEach({ query: 'mutation F($id: ID!) { setVisionStatus(id: $id, status: FROZEN) { status } }', variables: { id: '$vision' } }, user(owner), visions);
    expect(frozen.laned).toBe(true);
    expect(frozen.viaLane).toEqual(frozen.viaApollo);
    expect(frozen.viaLane.body).toEqual({ data: { setVisionStatus: { status: 'FROZEN' } } });
    // the lane's write happened, on its own vision
    const [row] = await p.lane.sql<{ title: string; status: string }>('select title, status from visions where id = ?', [visions.lane]);
    expect(row).toEqual({ title: 'renamed', status: 'frozen' });
  });

  it('answers sendMessage on the lane: the turn is stored and the reply comes back, as through Apollo', async () => {
    const visions = await visionPair();
    const r = await sendEach({ query: sendDoc, variables: { input: { visionId: '$vision', content: 'one small step' } }, operationName: 'Send' }, user(owner), visions);
    expect(r.laned).toBe(true);
    expect(r.viaLane).toEqual(r.viaApollo);
    expect((r.viaLane.body as any).data.sendMessage.assistantMessage.state).toBe('COMPLETE');
    // the statements of a send, the same on both paths
    expect(r.viaLane.sqlStatements).toBe(r.viaApollo.sqlStatements);
    const rows = await p.lane.sql<{ sender: string }>('select sender from vision_messages where visionid = ? order by createdat, sender desc', [visions.lane]);
    expect(rows.map((x) => x.sender)).toEqual(['user', 'assistant']);
  });

  it("answers a mutation's errors on the lane: frozen, deleted, missing and another user's vision, bad input, no identity", async () => {
    const frozen = await visionPair('FROZEN');
    const deleted = await visionPair('DELETED');
    const active = await visionPair();
    const cases: [Parameters<typeof sendEach>[0], Record<string, string>, { lane: string; apollo: string } | undefined, string][] = [
      [{ query: sendDoc, variables: { input: { visionId: '$vision', content: 'hello' } } }, user(owner), frozen, 'VISION_NOT_ACTIVE'],
      [{ query: sendDoc, variables: { input: { visionId: '$vision', content: 'hello' } } }, user(owner), deleted, 'VISION_NOT_ACTIVE'],
      [{ query: sendDoc, variables: { input: { visionId: '$vision', content: 'hello' } } }, user(newUser('lane-stranger')), active, 'NOT_FOUND'],
      [{ query: sendDoc, variables: { input: { visionId: '$vision', content: '   ' } } }, user(owner), active, 'BAD_USER_INPUT'],
      [{ query: sendDoc, variables: { input: { visionId: 'not-an-id', content: 'hello' } } }, user(owner), undefined, 'BAD_USER_INPUT'],
      [{ query: 'mutation { retryReply(visionId: "not-an-id") { userMessage { id } } }' }, user(owner), undefined, 'BAD_USER_INPUT'],
      [{ query: 'mutation { createVision(input: { title: "" }) { id } }' }, user(owner), undefined, 'BAD_USER_INPUT'],
      [{ query: 'mutation { createVision(input: { title: "x" }) { id } }' }, {}, undefined, 'UNAUTHENTICATED'],
    ];
    for (const [body, headers, visions, code] of cases) {
      const r = await sendEach(body, headers, visions);
      expect({ body, laned: r.laned }).toEqual({ body, laned: true });
      expect({ body, answer: r.viaLane }).toEqual({ body, answer: r.viaApollo });
      expect({ body, code: (r.viaLane.body as any).errors?.[0]?.extensions?.code }).toEqual({ body, code });
    }
    // nothing was written to the visions that refused
    const [{ n }] = await p.lane.sql<{ n: number }>("select count(*)::int as n from vision_messages where visionid::text = any(string_to_array(?, ','))", [[frozen.lane, frozen.apollo, deleted.lane, deleted.apollo, active.lane, active.apollo].join(',')]);
    expect(n).toBe(0);
  });

  it('answers variables that do not fit a mutation with 400 BAD_USER_INPUT, and picks the operation by name, as Apollo does', async () => {
    const bad = await sendEach({ query: sendDoc, variables: { input: { content: 'no vision' } } }, user(owner));
    expect(bad.laned).toBe(true);
    expect(bad.viaLane).toEqual(bad.viaApollo);
    expect(bad.viaLane.status).toBe(400);
    const both = 'query Count { visions { totalCount } } mutation Make { createVision(input: { title: "named" }) { title } }';
    const made = await sendEach({ query: both, operationName: 'Make' }, user(owner));
    expect(made.laned).toBe(true);
    expect(made.line).toMatchObject({ op: 'Make', type: 'mutation' });
    expect(made.viaLane).toEqual(made.viaApollo);
    expect(made.viaLane.body).toEqual({ data: { createVision: { title: 'named' } } });
  });
});

describe('HTTP query lane: a mutation whose model call fails', () => {
  it('answers LLM_FAILED with the kept message and the failed reply, as Apollo does', async () => {
    const fake = await startFakeOpenAI();
    fake.defaultBehaviour = { kind: 'status', status: 500 };
    const p = await startPair({ OPENAI_API_KEY: 'k', OPENAI_BASE_URL: fake.baseURL, LLM_MAX_RETRIES: '0', SUMMARIES: 'false' });
    try {
      const owner = newUser('lane-llm');
      const ids: string[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await p.apollo.gql<{ createVision: { id: string } }, unknown>('mutation { createVision(input: { title: "fails" }) { id } }', undefined, { user: owner });
        ids.push(r.data!.createVision.id);
      }
      const doc = 'mutation Send($input: SendMessageInput!) { sendMessage(input: $input) { assistantMessage { id } } }';
      p.laneLog.length = 0;
      const viaLane = await post(p.lane, { query: doc, variables: { input: { visionId: ids[0], content: 'will it fail' } } }, user(owner));
      const viaApollo = await post(p.apollo, { query: doc, variables: { input: { visionId: ids[1], content: 'will it fail' } } }, user(owner));
      expect(p.laneLog.at(-1)).toMatchObject({ lane: true, type: 'mutation', errorCode: 'LLM_FAILED' });
      expect(withoutIdsAndTimes(viaLane)).toEqual(withoutIdsAndTimes(viaApollo));
      expect((viaLane.body as any).errors[0].extensions).toMatchObject({ code: 'LLM_FAILED', reason: 'upstream_error' });
      // the user's message is kept and the reply is stored as FAILED, on the lane's side too
      const rows = await p.lane.sql<{ sender: string; state: string; id: string }>('select id, sender, state from vision_messages where visionid = ? order by createdat, sender desc', [ids[0]]);
      expect(rows.map((r) => [r.sender, r.state])).toEqual([
        ['user', 'complete'],
        ['assistant', 'failed'],
      ]);
      expect((viaLane.body as any).errors[0].extensions).toMatchObject({ userMessageId: rows[0].id, replyId: rows[1].id });
      const [{ n }] = await p.lane.sql<{ n: number }>("select count(*)::int as n from tokenscount where meta ->> 'visionid' = ?", [ids[0]]);
      expect(n).toBe(1);
    } finally {
      await p.lane.stop();
      await p.apollo.stop();
      await fake.close();
    }
  });
});

describe('HTTP query lane under a safelist (PERSISTED_DOCUMENTS)', () => {
  const file = join(__dirname, 'fixtures', 'persisted-documents.json');
  const manifest = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
  const [countId, countText] = Object.entries(manifest).find(([, body]) => body.startsWith('query VisionCount'))!;
  let p: Pair;
  beforeAll(async () => {
    p = await startPair({ PERSISTED_DOCUMENTS: file });
  });
  afterAll(async () => {
    await p?.lane.stop();
    await p?.apollo.stop();
  });

  it('answers a listed query named by documentId, by hash or by its text on the lane, as Apollo does', async () => {
    const headers = user(newUser('lane-safelist'));
    for (const body of [{ documentId: countId }, { extensions: { persistedQuery: { version: 1, sha256Hash: countId } } }, { query: countText }]) {
      const r = await send(p, body, headers);
      expect({ body, laned: r.laned }).toEqual({ body, laned: true });
      expect(r.viaLane).toEqual(r.viaApollo);
      expect(r.viaLane.body).toEqual({ data: { visions: { totalCount: 0 } } });
    }
  });

  it('leaves refused documents to Apollo: unlisted text, unknown id, no document', async () => {
    const headers = user(newUser('lane-safelist'));
    for (const body of [{ query: '{ visions { totalCount } }' }, { documentId: 'f'.repeat(64) }, { variables: {} }]) {
      const r = await send(p, body, headers);
      expect({ body, laned: r.laned }).toEqual({ body, laned: false });
      expect(r.viaLane).toEqual(r.viaApollo);
      expect(r.viaLane.status).toBe(400);
    }
  });
});

describe('HTTP query lane: rate limits and production formatting', () => {
  it('refuses an operation over RATE_LIMIT_OPS_PER_SECOND with 429 and its retry time, as Apollo does', async () => {
    const p = await startPair({ RATE_LIMIT_OPS_PER_SECOND: '1' });
    try {
      const id = newUser('lane-rate');
      const first = await send(p, { query: '{ visions { totalCount } }' }, user(id));
      expect(first.viaLane).toEqual(first.viaApollo);
      const second = await send(p, { query: '{ visions { totalCount } }' }, user(id));
      expect(second.laned).toBe(true);
      expect(second.viaLane).toEqual(second.viaApollo);
      expect(second.viaLane.status).toBe(429);
      expect((second.viaLane.body as any).errors[0].extensions).toMatchObject({ code: 'RATE_LIMITED', retryAfterSeconds: 1 });
      expect(second.line).toMatchObject({ errorCode: 'RATE_LIMITED', lane: true });
    } finally {
      await p.lane.stop();
      await p.apollo.stop();
    }
  });

  it('masks internal errors in production and says nothing of SQL, and leaves introspection to Apollo when it is off', async () => {
    // its own database: the test breaks it on purpose
    const scratch = await createScratchDatabase();
    const p = await startPair({ NODE_ENV: 'production', AUTH_JWT_SECRET: SECRET, OPENAI_API_KEY: 'k', DATABASE_URL: scratch.url, GRAPHQL_INTROSPECTION: 'false' });
    try {
      const token = await new SignJWT({ sub: newUser('lane-prod') }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(SECRET));
      const auth = { authorization: `Bearer ${token}` };
      const bad = await send(p, { query: '{ visions(first: 500) { totalCount } }' }, auth);
      expect(bad.laned).toBe(true);
      expect(bad.viaLane).toEqual(bad.viaApollo);
      expect(JSON.stringify(bad.viaLane.body)).not.toContain('stacktrace');
      await p.lane.sql('drop table tokenscount');
      const broken = await send(p, { query: '{ tokenUsage { calls } }' }, auth);
      expect(broken.laned).toBe(true);
      expect(broken.viaLane).toEqual(broken.viaApollo);
      expect((broken.viaLane.body as any).errors).toEqual([{ message: 'Internal server error', path: ['tokenUsage'], extensions: { code: 'INTERNAL_SERVER_ERROR' } }]);
      const anonymous = await send(p, { query: '{ visions { totalCount } }' }, { 'x-user-id': 'someone' });
      expect(anonymous.viaLane).toEqual(anonymous.viaApollo);
      // introspection off: the document is refused, by Apollo, before anything runs
      const introspection = await send(p, { query: '{ __schema { queryType { name } } }' }, auth);
      expect(introspection.laned).toBe(false);
      expect(introspection.viaLane).toEqual(introspection.viaApollo);
      expect(introspection.viaLane.status).toBe(400);
    } finally {
      await p.lane.stop();
      await p.apollo.stop();
      await scratch.drop();
    }
  });
});
