/**
 * Redis outages: a Redis of our own (never the shared one), hung with SIGSTOP or killed and
 * started again on the same port, under two in-process servers and one server process sharing it. The database is
 * the truth: replies complete and are stored, operations are limited in process, and
 * subscriptions hear events again once Redis is back, including those started during the outage.
 *
 * Unhandled rejections: jest-circus fails the running test on any (a listener of our own would not
 * hear them: the test's `process` is a sandbox copy), and the third server is a real process
 * (`node dist/src/index.js`), whose log would show every one ('unhandled promise rejection').
 *
 * The redis-server binary is required in CI (CI=true); elsewhere, without it, these cases print a
 * loud notice and do not run (as test/multi-instance.test.ts does for a running Redis).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { print } from 'graphql';
import type { Client as WsClient } from 'graphql-ws';
import { findFreePort } from '../src/db/embedded';
import { Topic } from '../src/graphql/pubsub';
import { CreateVisionDocument, MessageAddedDocument, SendMessageDocument, type MessageAddedSubscription, type SendMessageMutation } from './generated/graphql';
import { chunk, startFakeOpenAI, type FakeOpenAI } from './support/fake-openai';
import { testDatabaseUrl } from './support/db';
import { spawnServer, type ServerProcess } from './support/process';
import { errorCode, newUser, postGraphQL, startTestServer, type TestServer } from './support/server';
import { collect, wsClient, type Collected } from './support/ws';

const requireRedis = process.env.CI === 'true' || process.env.VP_TEST_REQUIRE_REDIS === 'true';

/** VP_TEST_REDIS_SERVER, else `redis-server` on the PATH or in /usr/bin, /usr/local/bin. */
function findRedisServer(): string | undefined {
  const given = process.env.VP_TEST_REDIS_SERVER;
  if (given) return existsSync(given) ? given : undefined;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/local/bin'];
  return dirs.map((d) => join(d, 'redis-server')).find((p) => existsSync(p));
}

/** A throwaway redis-server: no persistence, loopback only. */
class RedisProcess {
  private proc?: ChildProcess;
  private exited?: Promise<void>;
  constructor(
    private readonly bin: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmpdir()];
    const proc = spawn(this.bin, args, { stdio: 'ignore' });
    this.proc = proc;
    this.exited = new Promise((r) => proc.once('exit', () => r()));
    const deadline = Date.now() + 10_000;
    while (!(await this.answers())) {
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${this.port}`);
      await sleep(50);
    }
  }

  /** PING over a plain socket (an ioredis client that failed to connect delays the exit of jest). */
  private answers(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = connect(this.port, '127.0.0.1');
      let reply = '';
      const done = (ok: boolean) => {
        socket.destroy();
        resolve(ok);
      };
      socket.setTimeout(1000, () => done(false));
      socket.on('error', () => done(false));
      socket.on('connect', () => socket.write('PING\r\n'));
      socket.on('data', (d) => {
        reply += d.toString();
        if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
      });
    });
  }

  /** Hangs the server: connections stay open, nothing is answered. */
  pause(): void {
    this.proc?.kill('SIGSTOP');
  }

  resume(): void {
    this.proc?.kill('SIGCONT');
  }

  async kill(): Promise<void> {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGCONT');
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Fails when `p` has not settled within `ms`: a hang must fail the test, not stall it. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

let redis: RedisProcess | undefined;
let fake: FakeOpenAI;
let a: TestServer;
let b: TestServer;
/** A server process of its own: an unhandled rejection there is logged, and it must stay up. */
let c: ServerProcess;
const clients: WsClient[] = [];

beforeAll(async () => {
  const bin = findRedisServer();
  if (!bin) {
    if (requireRedis) throw new Error('redis-server is not installed; CI must provide it');
    console.warn('*** redis-server is not installed: the Redis outage tests did NOT run ***');
    return;
  }
  redis = new RedisProcess(bin, await findFreePort());
  await redis.start();
  fake = await startFakeOpenAI();
  const env = {
    REDIS_URL: redis.url,
    REDIS_COMMAND_TIMEOUT_MS: '300',
    OPENAI_API_KEY: 'test-key',
    OPENAI_BASE_URL: fake.baseURL,
    LLM_MAX_RETRIES: '0',
    LLM_TIMEOUT_MS: '20000',
    REPLY_FLUSH_MS: '100',
    REPLY_STALE_MS: '5000',
    // on, so that they go through Redis; high enough for the steps of one user
    RATE_LIMIT_OPS_PER_SECOND: '8',
    RATE_LIMIT_SENDS_PER_MINUTE: '100',
  };
  // one after the other: this test is about Redis, not about instances starting at the same moment
  a = await startTestServer(env);
  b = await startTestServer(env);
  c = await spawnServer({ ...env, DATABASE_URL: testDatabaseUrl() });
});

afterAll(async () => {
  for (const ws of clients.splice(0)) await ws.dispose();
  await Promise.all([a?.stop(), b?.stop(), c?.kill()]);
  await fake?.close();
  await redis?.kill();
});

beforeEach(() => {
  if (!redis) expect(requireRedis).toBe(false);
  fake?.reset();
});

async function newVision(srv: TestServer, user: string): Promise<string> {
  const r = await srv.gql(CreateVisionDocument, { input: {} }, { user });
  expect(r.errors).toBeUndefined();
  return r.data!.createVision.id;
}

function subscribe(srv: { url: string }, user: string, visionId: string): Collected<MessageAddedSubscription> {
  const ws = wsClient(srv.url, { user });
  clients.push(ws);
  return collect(ws, MessageAddedDocument, { visionId });
}

/**
 * Publishes a probe through `srv`'s pub/sub until `sub` receives one: Redis is up again for both
 * connections involved, and the subscription is live in Redis.
 */
async function untilDelivered(srv: TestServer, visionId: string, sub: Collected<MessageAddedSubscription>): Promise<void> {
  const deadline = Date.now() + 15_000;
  const probes = () => sub.events.filter((e) => e.messageAdded.content === 'probe').length;
  while (probes() === 0) {
    if (Date.now() > deadline) throw new Error(`no event reached the subscriber within 15 s: ${JSON.stringify(sub.errors)}`);
    srv.server.pubsub.publish(Topic.MESSAGE_ADDED, visionId, {
      id: randomUUID(),
      visionId,
      sender: 'system',
      type: 'info',
      content: 'probe',
      state: 'complete',
      payload: null,
      createdAt: new Date().toISOString(),
    });
    await sleep(100);
  }
}

const contents = (sub: Collected<MessageAddedSubscription>) => sub.events.map((e) => e.messageAdded.content).filter((c) => c !== 'probe');

async function untilContent(sub: Collected<MessageAddedSubscription>, text: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!contents(sub).includes(text)) {
    if (Date.now() > deadline) throw new Error(`"${text}" did not reach the subscriber within 10 s: ${JSON.stringify(contents(sub))}`);
    await sleep(50);
  }
}

describe('Redis hangs (SIGSTOP)', () => {
  it('a reply streaming when Redis hangs completes and is stored; operations are limited in process, never fail', async () => {
    if (!redis) return;
    const user = newUser('hang');
    const visionId = await newVision(a, user);
    const added = subscribe(a, user, visionId);
    await untilDelivered(a, visionId, added);

    const text = 'Шаг за шагом, даже когда Redis молчит.';
    let release!: () => void;
    fake.enqueue({ kind: 'stream', chunks: chunk(text, 5), chunkDelayMs: 20, hold: new Promise<void>((r) => (release = r)) });
    const sending = a.gql(SendMessageDocument, { input: { visionId, content: 'Как идти дальше?' } }, { user });
    await fake.waitForRequests(1);
    redis.pause();
    try {
      release();
      const sent = await within(sending, 10_000, 'sendMessage streaming when Redis hung');
      expect(sent.errors).toBeUndefined();
      expect(sent.data!.sendMessage.assistantMessage).toMatchObject({ state: 'COMPLETE', content: text });
      const [row] = await a.sql(`select state, content from vision_messages where id = ?`, [sent.data!.sendMessage.assistantMessage.id]);
      expect(row).toEqual({ state: 'complete', content: text });

      // a whole send during the hang, on the other instance: both rate limits ask Redis first
      const other = newUser('hang-other');
      const otherVision = await within(newVision(b, other), 10_000, 'createVision during the hang');
      const second = await within(
        b.gql(SendMessageDocument, { input: { visionId: otherVision, content: 'И ещё?' } }, { user: other }),
        10_000,
        'sendMessage during the hang',
      );
      expect(second.errors).toBeUndefined();
      expect(second.data!.sendMessage.assistantMessage.state).toBe('COMPLETE');

      // a burst over the limit: refused by the in-process limiter, nothing else
      const burster = newUser('hang-burst');
      const requests = Array.from({ length: 30 }, () => a.gql('{ __typename }', {}, { user: burster }));
      const burst = await within(Promise.all(requests), 10_000, 'a burst during the hang');
      const codes = burst.map((r) => (r.errors ? errorCode(r) : 'OK'));
      expect(codes).toContain('RATE_LIMITED');
      expect(codes.filter((c) => c !== 'OK' && c !== 'RATE_LIMITED')).toEqual([]);
    } finally {
      redis.resume();
    }

    // once Redis answers again, events flow to the subscription opened before the hang
    await untilDelivered(a, visionId, added);
    fake.enqueue({ kind: 'stream', chunks: ['After', ' the', ' hang.'] });
    const after = await a.gql(SendMessageDocument, { input: { visionId, content: 'Снова?' } }, { user });
    expect(after.errors).toBeUndefined();
    await untilContent(added, 'After the hang.');
  });
});

describe('Redis killed and started again', () => {
  it('subscriptions started during the outage, on any instance, hear events published after Redis is back', async () => {
    if (!redis) return;
    const user = newUser('restart');
    const visionId = await newVision(a, user);
    const other = newUser('restart-other');
    const otherVision = await newVision(b, other);
    await redis.kill();

    const subs = [subscribe(a, user, visionId), subscribe(b, user, visionId), subscribe(c, user, visionId)];
    // the subscriptions start while no SUBSCRIBE can be sent, and ioredis gives up on whatever it
    // had queued, as it does in any outage longer than a few reconnect attempts
    await sleep(1500);
    for (const sub of subs) expect(sub.errors).toEqual([]);
    // a send during the outage, on the server process: its events are published to no one
    const during = await within(
      postGraphQL<SendMessageMutation>(`${c.url}/graphql`, print(SendMessageDocument), { input: { visionId: otherVision, content: 'Кто-нибудь?' } }, { user: other }),
      10_000,
      'sendMessage while Redis is down',
    );
    expect(during.errors).toBeUndefined();
    expect(during.data!.sendMessage.assistantMessage.state).toBe('COMPLETE');

    await redis.start();
    for (const sub of subs) await untilDelivered(a, visionId, sub);
    fake.enqueue({ kind: 'stream', chunks: ['Back', ' again.'] });
    const sent = await a.gql(SendMessageDocument, { input: { visionId, content: 'Ты здесь?' } }, { user });
    expect(sent.errors).toBeUndefined();
    for (const sub of subs) {
      await untilContent(sub, 'Back again.');
      expect(contents(sub)).toEqual(['Ты здесь?', 'Back again.']);
    }
  });
});

describe('the server process', () => {
  it('stayed up through both outages, with no unhandled rejection and one warning per connection and outage', async () => {
    if (!redis) return;
    expect(c.proc.exitCode).toBeNull();
    expect((await fetch(`${c.url}/healthz`)).status).toBe(200);
    expect(c.output.filter((l) => l.includes('unhandled promise rejection'))).toEqual([]);
    // however many reconnect attempts and commands failed: at most two connections × two outages
    const warned = c.output.filter((l) => l.includes('redis unavailable'));
    expect(warned.length).toBeGreaterThan(0);
    expect(warned.length).toBeLessThanOrEqual(4);
  });
});
