import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GraphQLError, GraphQLID, GraphQLObjectType, GraphQLSchema, GraphQLString, specifiedRules, type ExecutionResult } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket, { WebSocketServer } from 'ws';
import { pino } from 'pino';
import { createAppPubSub, Topic, type AppPubSub, type StoredMessageEvent } from '../src/graphql/pubsub';
import { createSharedSubscribe, DocumentCache } from '../src/graphql/subscriptions';
import { deliverDirectly } from '../src/graphql/ws-direct';
import { serveGraphqlWs } from '../src/graphql/ws-transport';

/**
 * Subscription events written straight to the sockets (src/graphql/ws-direct.ts) under graphql-ws,
 * over real WebSockets: every subscriber gets every event in order behind its own operation id,
 * each distinct operation is executed and serialized once per event, errors are formatted, an
 * execution that is still running keeps the order, `complete` stops delivery, and a client that
 * does not read is cut off with an `error` once its socket holds too much, without holding up the
 * others. The real server's subscriptions go the same way (dialog.test.ts, reply-ends.test.ts).
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let resolved = 0;
let stringified = 0;
const Message = new GraphQLObjectType({
  name: 'Message',
  fields: {
    id: { type: GraphQLID },
    content: {
      type: GraphQLString,
      resolve: async (m: StoredMessageEvent) => {
        resolved++;
        // "slow:" contents resolve later than the events after them: order must hold anyway
        if (m.content.startsWith('slow:')) await sleep(30);
        if (m.content === 'boom') throw new GraphQLError('cannot show this one', { extensions: { code: 'SECRET' } });
        return m.content;
      },
    },
    shout: { type: GraphQLString, resolve: (m: StoredMessageEvent) => m.content.toUpperCase() },
  },
});
const schema = new GraphQLSchema({
  query: new GraphQLObjectType({ name: 'Query', fields: { ok: { type: GraphQLString } } }),
  subscription: new GraphQLObjectType({
    name: 'Subscription',
    fields: {
      messageAdded: {
        type: Message,
        args: { visionId: { type: GraphQLID } },
        subscribe: (_r, args: { visionId: string }, ctx: { pubsub: AppPubSub }) => ctx.pubsub.subscribe(Topic.MESSAGE_ADDED, args.visionId),
        resolve: (e) => e,
      },
    },
  }),
});
const docs = new DocumentCache({ schema, rules: specifiedRules });

/** The pub/sub's event target, counting its listeners (one per running subscription). */
class CountingTarget extends EventTarget {
  listeners = 0;
  override addEventListener(...args: Parameters<EventTarget['addEventListener']>): void {
    this.listeners++;
    super.addEventListener(...args);
  }
  override removeEventListener(...args: Parameters<EventTarget['removeEventListener']>): void {
    this.listeners--;
    super.removeEventListener(...args);
  }
}
const target = new CountingTarget();

const MAX_BUFFERED = 64 * 1024;
let http: Server;
let url: string;
let pubsub: AppPubSub;
let dispose: () => Promise<void>;
const clients: Client[] = [];

beforeAll(async () => {
  pubsub = createAppPubSub(target);
  http = createServer();
  const wss = new WebSocketServer({ server: http, path: '/graphql' });
  ({ dispose } = serveGraphqlWs(
    {
      schema,
      subscribe: createSharedSubscribe(),
      context: { pubsub },
      onSubscribe: (_ctx, _id, payload) => ({ schema, document: docs.load(payload.query).document!, variableValues: payload.variables }),
      onOperation: (ctx, id, _payload, _args, result) =>
        deliverDirectly(result, ctx.extra.socket, id, {
          format: (r: ExecutionResult) => {
            if (!r.errors?.length) return undefined;
            stringified++;
            return { ...r, errors: r.errors.map((e) => ({ message: e.message, extensions: { code: `FORMATTED_${String(e.extensions.code)}` } })) };
          },
          maxBufferedBytes: MAX_BUFFERED,
        }),
    },
    wss,
    { logger: pino({ level: 'silent' }), keepAliveMs: 0 },
  ));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  url = `ws://127.0.0.1:${(http.address() as AddressInfo).port}/graphql`;
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.dispose()));
  await dispose();
  http.closeAllConnections();
  await new Promise((r) => http.close(r));
});

const event = (visionId: string, id: string, content: string): StoredMessageEvent => ({
  id,
  visionId,
  sender: 'user',
  type: 'text',
  content,
  state: 'complete',
  payload: null,
  createdAt: new Date().toISOString(),
});

interface Sub {
  got: any[];
  ended: Promise<unknown>;
  stop(): void;
}

/** A graphql-ws client subscribed to a vision; resolves once the server runs the subscription. */
async function subscribe(client: Client, visionId: string, fields = 'id content'): Promise<Sub> {
  const got: any[] = [];
  let live = false;
  let end!: (v: unknown) => void;
  const ended = new Promise((r) => (end = r));
  const stop = client.subscribe(
    { query: `subscription ($v: ID) { messageAdded(visionId: $v) { ${fields} } }`, variables: { v: visionId } },
    {
      // probes (below) only tell that the subscription runs
      next: (r: any) => (String(r.data?.messageAdded?.id).startsWith('probe') ? (live = true) : got.push(r)),
      error: (e) => end({ error: e }),
      complete: () => end({ complete: true }),
    },
  );
  for (let i = 0; !live; i++) {
    if (i > 200) throw new Error('subscription did not start');
    pubsub.publish(Topic.MESSAGE_ADDED, visionId, event(visionId, 'probe', 'probe'));
    await sleep(10);
  }
  return { got, ended, stop };
}

function client(): Client {
  const c = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
  clients.push(c);
  return c;
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; !check(); i++) {
    if (i > 500) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

it('every subscriber gets every event in order; each distinct operation is executed once per event', async () => {
  // 20 subscribers on 5 sockets (several operations per socket), plus one with another selection
  const sockets = Array.from({ length: 5 }, () => client());
  const subs = await Promise.all(Array.from({ length: 20 }, (_, i) => subscribe(sockets[i % 5]!, 'v1')));
  const other = await subscribe(sockets[0]!, 'v1', 'id shout');
  const elsewhere = await subscribe(sockets[1]!, 'v2');
  resolved = 0;
  for (let i = 0; i < 30; i++) pubsub.publish(Topic.MESSAGE_ADDED, 'v1', event('v1', `m${i}`, `text ${i}`));
  await until(() => subs.every((s) => s.got.length === 30) && other.got.length === 30, 'all events');
  const expected = Array.from({ length: 30 }, (_, i) => ({ data: { messageAdded: { id: `m${i}`, content: `text ${i}` } } }));
  for (const s of subs) expect(s.got).toEqual(expected);
  expect(other.got.map((r) => r.data.messageAdded.shout)).toEqual(Array.from({ length: 30 }, (_, i) => `TEXT ${i}`));
  // `content` resolved once per event for the 20 identical operations (the other selection has no content)
  expect(resolved).toBe(30);
  expect(elsewhere.got).toEqual([]);
});

it('an event whose execution fails reaches every subscriber with its errors formatted once; later events follow', async () => {
  const subs = await Promise.all([subscribe(client(), 'v3'), subscribe(client(), 'v3')]);
  stringified = 0;
  pubsub.publish(Topic.MESSAGE_ADDED, 'v3', event('v3', 'a', 'boom'));
  pubsub.publish(Topic.MESSAGE_ADDED, 'v3', event('v3', 'b', 'fine'));
  await until(() => subs.every((s) => s.got.length === 2), 'both events');
  for (const s of subs) {
    expect(s.got[0]).toEqual({
      data: { messageAdded: { id: 'a', content: null } },
      errors: [{ message: 'cannot show this one', extensions: { code: 'FORMATTED_SECRET' } }],
    });
    expect(s.got[1]).toEqual({ data: { messageAdded: { id: 'b', content: 'fine' } } });
  }
  expect(stringified).toBe(1);
});

it('an execution that is still running keeps the order of the events behind it', async () => {
  const sub = await subscribe(client(), 'v4');
  pubsub.publish(Topic.MESSAGE_ADDED, 'v4', event('v4', '1', 'slow:one'));
  pubsub.publish(Topic.MESSAGE_ADDED, 'v4', event('v4', '2', 'two'));
  pubsub.publish(Topic.MESSAGE_ADDED, 'v4', event('v4', '3', 'slow:three'));
  pubsub.publish(Topic.MESSAGE_ADDED, 'v4', event('v4', '4', 'four'));
  await until(() => sub.got.length === 4, 'four events');
  expect(sub.got.map((r) => r.data.messageAdded.id)).toEqual(['1', '2', '3', '4']);
});

it('complete from the client stops delivery to that operation only', async () => {
  const c = client();
  const a = await subscribe(c, 'v5');
  const b = await subscribe(c, 'v5');
  a.stop();
  await sleep(50);
  pubsub.publish(Topic.MESSAGE_ADDED, 'v5', event('v5', 'after', 'after'));
  await until(() => b.got.length === 1, 'the event on the other operation');
  await sleep(50);
  expect(a.got).toEqual([]);
  await expect(a.ended).resolves.toEqual({ complete: true });
});

it('a client that stops reading is cut off with an error once its socket holds too much; the others get everything', async () => {
  const fast = await subscribe(client(), 'v6');
  // the slow one speaks the protocol by hand, so that it can stop reading its socket
  const raw = new WebSocket(url, 'graphql-transport-ws');
  const frames: any[] = [];
  raw.on('message', (data) => frames.push(JSON.parse(String(data))));
  await new Promise((r) => raw.once('open', r));
  raw.send(JSON.stringify({ type: 'connection_init' }));
  await until(() => frames.some((f) => f.type === 'connection_ack'), 'connection_ack');
  raw.send(JSON.stringify({ id: 'slow', type: 'subscribe', payload: { query: 'subscription ($v: ID) { messageAdded(visionId: $v) { id content } }', variables: { v: 'v6' } } }));
  await until(() => {
    pubsub.publish(Topic.MESSAGE_ADDED, 'v6', event('v6', 'probe', 'probe'));
    return frames.some((f) => f.id === 'slow' && f.type === 'next');
  }, 'the raw subscription');
  await sleep(20);
  frames.length = 0;

  raw.pause();
  // far more than the kernel's socket buffers and MAX_BUFFERED together
  const big = 'x'.repeat(64 * 1024);
  const n = 600;
  for (let i = 0; i < n; i++) {
    pubsub.publish(Topic.MESSAGE_ADDED, 'v6', event('v6', `e${i}`, big));
    // the fast client reads between events (a burst of them could outgrow the limit too)
    await new Promise((r) => setImmediate(r));
  }
  await until(() => fast.got.length === n, `every event on the fast client (has ${fast.got.length})`);
  expect(fast.got.map((r) => r.data.messageAdded.id)).toEqual(Array.from({ length: n }, (_, i) => `e${i}`));

  raw.resume();
  await until(() => frames.some((f) => f.type === 'error'), 'the error of the slow subscription');
  const error = frames.find((f) => f.type === 'error');
  expect(error.id).toBe('slow');
  expect(error.payload[0].message).toMatch(/fell more than 65536 bytes behind/);
  // what it received before being cut off came in order, and fewer than all
  const ids = frames.filter((f) => f.type === 'next').map((f) => f.payload.data.messageAdded.id).filter((id) => id !== 'probe');
  expect(ids.length).toBeLessThan(n);
  expect(ids).toEqual(Array.from({ length: ids.length }, (_, i) => `e${i}`));
  // nothing more for it after the error; the socket stays open for other operations
  const before = frames.length;
  pubsub.publish(Topic.MESSAGE_ADDED, 'v6', event('v6', 'later', 'later'));
  await until(() => fast.got.length === n + 1, 'the later event');
  await sleep(50);
  expect(frames.length).toBe(before);
  expect(raw.readyState).toBe(WebSocket.OPEN);
  raw.close();
});

it('a client that goes away mid-subscription leaves no listener behind; the others keep receiving', async () => {
  const stays = await subscribe(client(), 'v7');
  const leaving = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
  await Promise.all([subscribe(leaving, 'v7'), subscribe(leaving, 'v7')]);
  const before = target.listeners;
  await leaving.dispose();
  await until(() => target.listeners === before - 2, 'the two listeners of the closed socket to go');
  pubsub.publish(Topic.MESSAGE_ADDED, 'v7', event('v7', 'after', 'after'));
  await until(() => stays.got.length === 1, 'the event on the remaining client');
  expect(stays.got[0].data.messageAdded.id).toBe('after');
});
