import { createClient as createSseClient } from 'graphql-sse';
import type { Client } from 'graphql-ws';
import { CreateVisionDocument } from './generated/graphql';
import { newUser, startTestServer, type TestServer } from './support/server';
import { waitUntil } from './support/wait';
import { wsClient } from './support/ws';

/**
 * One log line per GraphQL operation on every transport (msg "graphql"): HTTP (Apollo's plugin or
 * the query lane), WebSocket and SSE (`transport`), with the operation's name, type, user,
 * duration and the error code the client got; a subscription once, as it starts or is refused.
 * Metrics are off here: the lines do not depend on them.
 */
let server: TestServer;
const lines: Record<string, any>[] = [];

beforeAll(async () => {
  server = await startTestServer({ METRICS: 'false' }, { onLog: (e) => e.msg === 'graphql' && lines.push(e) });
});

afterAll(async () => {
  await server?.stop();
});

const linesOf = (userId: string) => lines.filter((l) => l.userId === userId);
const run = (c: Client, query: string, variables: Record<string, unknown> = {}) =>
  new Promise<{ errors?: readonly { extensions?: Record<string, unknown> }[] }>((resolve, reject) => {
    let result: any;
    c.subscribe({ query, variables }, { next: (r) => (result = r), error: reject, complete: () => resolve(result) });
  });

test('WebSocket: a query, a refused query and a subscription start, each one line with transport "ws"', async () => {
  const user = newUser('log-ws');
  const created = await server.gql(CreateVisionDocument, { input: { title: 'Logs' } }, { user });
  const visionId = created.data!.createVision.id;
  const ws = wsClient(server.url, { user });
  try {
    expect((await run(ws, 'query WsCount { visions(first: 1) { totalCount } }')).errors).toBeUndefined();
    const bad = await run(ws, 'query WsBad($id: ID!) { vision(id: $id) { id } }', { id: 'not-an-id' });
    const code = bad.errors![0]!.extensions!.code;
    const sub = ws.subscribe({ query: `subscription WsAdded { messageAdded(visionId: "${visionId}") { id } }` }, { next: () => undefined, error: () => undefined, complete: () => undefined });
    await waitUntil('the subscription start logged', () => linesOf(user).some((l) => l.op === 'WsAdded'));
    sub();
    const ws_ = linesOf(user).filter((l) => l.transport === 'ws');
    expect(ws_.map((l) => [l.op, l.type, l.errorCode])).toEqual([
      ['WsCount', 'query', undefined],
      ['WsBad', 'query', code],
      ['WsAdded', 'subscription', undefined],
    ]);
    for (const l of ws_) expect(typeof l.ms).toBe('number');
    // the HTTP mutation's line has no transport field, as before
    expect(linesOf(user).filter((l) => l.transport === undefined).map((l) => l.op)).toEqual(['CreateVision']);
  } finally {
    await ws.dispose();
  }
});

test('SSE: a query and a refused operation, each one line with transport "sse"', async () => {
  const user = newUser('log-sse');
  const sse = createSseClient({ url: `${server.url}/graphql/stream`, headers: { 'x-user-id': user }, retryAttempts: 0 });
  try {
    const ask = (query: string) =>
      new Promise<any>((resolve, reject) => {
        let result: any;
        sse.subscribe({ query }, { next: (r) => (result = r), error: reject, complete: () => resolve(result) });
      });
    expect((await ask('query SseCount { visions(first: 1) { totalCount } }')).errors).toBeUndefined();
    expect((await ask('query SseBroken { nope }')).errors).toHaveLength(1);
    await waitUntil('both SSE operations logged', () => linesOf(user).length >= 2);
    // a document that does not validate has no operation: no client-chosen name in the log
    expect(linesOf(user).map((l) => [l.op, l.type, l.errorCode, l.transport])).toEqual([
      ['SseCount', 'query', undefined, 'sse'],
      [null, null, 'BAD_USER_INPUT', 'sse'],
    ]);
  } finally {
    sse.dispose();
  }
});
