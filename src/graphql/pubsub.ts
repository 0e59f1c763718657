import { Redis } from 'ioredis';
import type { Logger } from '../logger';
import { createRedisEventTarget } from './redis-event-target';

export enum Topic {
  MESSAGE_ADDED = 'MESSAGE_ADDED',
  REPLY_DELTA = 'REPLY_DELTA',
  /** Instance to instance: stop the reply of a vision wherever it runs. */
  REPLY_STOP = 'REPLY_STOP',
}

/** A stored message as it travels between instances: plain JSON, dates as ISO strings. */
export interface StoredMessageEvent {
  id: string;
  visionId: string;
  sender: string;
  type: string;
  content: string;
  state: string;
  payload: Record<string, unknown> | null;
  createdAt: string;
}

export interface ReplyDeltaEvent {
  visionId: string;
  replyId: string;
  /** 1, 2, 3...; 0 marks an internal synchronisation event that never reaches clients. */
  seq: number;
  delta: string;
  done: boolean;
  state: string;
}

export interface ReplyStopEvent {
  visionId: string;
  /** The reply to stop: a late signal must not stop the next reply of the vision. */
  replyId: string;
  cause: string;
}

/** Topic → [topic id (the vision id), payload]. */
export type PubSubMap = {
  [Topic.MESSAGE_ADDED]: [visionId: string, payload: StoredMessageEvent];
  [Topic.REPLY_DELTA]: [visionId: string, payload: ReplyDeltaEvent];
  [Topic.REPLY_STOP]: [payload: ReplyStopEvent];
};

type Payload<K extends Topic> = PubSubMap[K] extends [string, infer P] ? P : PubSubMap[K] extends [infer P] ? P : never;
type IdArg<K extends Topic> = PubSubMap[K] extends [string, unknown] ? [id: string] : [];

export interface AppPubSub {
  /** `publish(topic, id, payload)` for per-vision topics, `publish(topic, payload)` for the others. */
  publish<K extends Topic>(topic: K, ...args: PubSubMap[K]): void;
  /** Events of the topic (and id) from this call on, until `return()`. */
  subscribe<K extends Topic>(topic: K, ...id: IdArg<K>): AsyncIterableIterator<Payload<K>> & { return(): Promise<IteratorResult<Payload<K>>> };
}

/** Events a subscriber may leave unread (or waiting behind an execution, ws-direct.ts) before its subscription is ended with an error. */
export const MAX_PENDING = 1024;

/**
 * Publish/subscribe over an EventTarget (in memory, or our Redis event target), the
 * way `@graphql-yoga/subscription`'s `createPubSub` routes topics (`TOPIC:id`), with a leaner
 * subscriber: a listener and a queue instead of a Repeater. A fan-out holds one per subscriber
 * and runs it for every event, so its memory and per-event cost are what limit the fan-out.
 */
export function createAppPubSub(target: EventTarget = new EventTarget()): AppPubSub {
  return {
    publish(topic, ...args) {
      const [id, payload] = args.length === 2 ? args : [undefined, args[0]];
      target.dispatchEvent(new CustomEvent(id === undefined ? topic : `${topic}:${id}`, { detail: payload }));
    },
    subscribe<K extends Topic>(topic: K, ...idArg: IdArg<K>) {
      return new Subscriber<Payload<K>>(target, idArg[0] === undefined ? topic : `${topic}:${idArg[0]}`);
    },
  };
}

const DONE: IteratorResult<never, undefined> = Object.freeze({ value: undefined, done: true });

/** A subscription whose events can be pushed to a callback instead of being read with `next()`. */
export interface Forwardable<P = unknown> {
  /**
   * From now on each event goes to `sink` synchronously, from the publisher's dispatch (those
   * queued first, in order); `next()` is not to be called any more. False when the subscription
   * has ended already (its `next()` tells how).
   */
  forward(sink: (value: P) => void): boolean;
}

export function isForwardable(source: unknown): source is Forwardable & AsyncIterator<unknown> {
  return source instanceof Subscriber;
}

/** One subscription: events queue until read (or go to its sink). A class, so that thousands of them share their methods. */
class Subscriber<P> implements AsyncIterableIterator<P>, Forwardable<P> {
  private readonly queue: P[] = [];
  private waiting?: { resolve: (r: IteratorResult<P>) => void; reject: (err: unknown) => void };
  private sink?: (value: P) => void;
  private ended = false;
  private overflow?: Error;
  // the one per-subscriber function: the target calls it without `this`
  private readonly listener = (event: Event) => this.push((event as CustomEvent<P>).detail);

  constructor(
    private readonly target: EventTarget,
    private readonly type: string,
  ) {
    target.addEventListener(type, this.listener);
  }

  private push(value: P): void {
    if (this.sink) {
      this.sink(value);
    } else if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w.resolve({ value, done: false });
    } else if (this.queue.length >= MAX_PENDING) {
      this.overflow = new Error(`subscriber fell more than ${MAX_PENDING} events behind`);
      this.end();
    } else {
      this.queue.push(value);
    }
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.queue.length = 0;
    this.sink = undefined;
    this.target.removeEventListener(this.type, this.listener);
  }

  forward(sink: (value: P) => void): boolean {
    if (this.ended) return false;
    const queued = this.queue.splice(0);
    this.sink = sink;
    for (const value of queued) sink(value);
    return true;
  }

  next(): Promise<IteratorResult<P>> {
    if (this.queue.length) return Promise.resolve({ value: this.queue.shift()!, done: false });
    if (this.overflow) return Promise.reject(this.overflow);
    if (this.ended) return Promise.resolve(DONE);
    return new Promise<IteratorResult<P>>((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  return(): Promise<IteratorResult<P>> {
    this.end();
    this.overflow = undefined;
    const w = this.waiting;
    this.waiting = undefined;
    w?.resolve(DONE);
    return Promise.resolve(DONE);
  }

  throw(err: unknown): Promise<IteratorResult<P>> {
    this.end();
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(err);
    return Promise.reject(err);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

export interface PubSubBackend {
  pubsub: AppPubSub;
  /** The command connection when Redis is used (also serves the reply buffer and the rate limits). */
  redis?: Redis;
  close(): Promise<void>;
}

/** @default 1000 */
export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 1000;

/**
 * In memory for one instance; through Redis pub/sub ({@link createRedisEventTarget} over ioredis)
 * when REDIS_URL is set, so that events reach subscribers on every instance. One publishing
 * connection per instance keeps the order of events per vision.
 *
 * Redis is never the truth (the database is), so no command may wait for it unboundedly: each
 * fails after `commandTimeoutMs`, a connection that hears nothing that long while a command waits
 * is dropped and rebuilt (a hung server keeps its TCP connection open), and while a connection is
 * not ready its commands fail at once instead of queueing (no offline queue to replay stale
 * events from, no memory growing with an outage). Callers treat a failure as "Redis is down".
 */
export async function createPubSubBackend(opts: { redisUrl?: string; commandTimeoutMs?: number; logger: Logger }): Promise<PubSubBackend> {
  if (!opts.redisUrl) return { pubsub: createAppPubSub(), close: async () => undefined };
  const timeoutMs = opts.commandTimeoutMs ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS;
  const connect = (name: string, subscriber: boolean) => {
    const r = new Redis(opts.redisUrl!, {
      connectionName: `vision-path-${name}`,
      lazyConnect: true,
      commandTimeout: timeoutMs,
      socketTimeout: timeoutMs,
      enableOfflineQueue: false,
      // a command pending when the connection drops fails then, and is not sent again later
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // the event target subscribes its channels itself on every `ready`, including those whose
      // SUBSCRIBE failed (ioredis would resend only the confirmed ones)
      autoResubscribe: !subscriber,
      retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    });
    return { redis: r, outage: watchOutages(r, name, opts.logger) };
  };
  const pub = connect('pub', false);
  const sub = connect('sub', true);
  const disconnect = () => {
    pub.redis.disconnect();
    sub.redis.disconnect();
  };
  try {
    await Promise.all([pub.redis.connect(), sub.redis.connect()]);
  } catch (err) {
    disconnect();
    // the URL may hold a password: not in the message
    throw new Error(`Redis (REDIS_URL) cannot be reached: ${(err as Error).message}`, { cause: err });
  }
  const target = createRedisEventTarget({
    publishClient: pub.redis,
    subscribeClient: sub.redis,
    onError: (err, command) => (command === 'publish' ? pub : sub).outage(err, command),
  });
  opts.logger.info({ commandTimeoutMs: timeoutMs }, 'pub/sub through Redis');
  return {
    pubsub: createAppPubSub(target),
    redis: pub.redis,
    async close() {
      target.close();
      await Promise.allSettled([pub.redis.quit(), sub.redis.quit()]);
      // QUIT fails at once on a connection that is not ready; its reconnect timer must stop too
      disconnect();
    },
  };
}

/**
 * Logs a connection's outage once when it begins (its first error or failed command) and once
 * when the connection is ready again, with the number of failures in between: during an outage
 * every reconnect attempt and every event would otherwise log a line.
 */
function watchOutages(redis: Redis, connection: string, logger: Logger): (err: unknown, what: string) => void {
  let failures = 0;
  const fail = (err: unknown, what: string) => {
    if (failures++ > 0) return;
    logger.warn({ err: err instanceof Error ? err.message : String(err), connection, what }, 'redis unavailable: in-process fallbacks until it is back');
  };
  redis.on('error', (err) => fail(err, 'connection'));
  redis.on('ready', () => {
    if (failures > 0) logger.warn({ connection, failures }, 'redis available again');
    failures = 0;
  });
  return fail;
}
