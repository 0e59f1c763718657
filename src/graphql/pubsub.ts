import { createPubSub, type PubSub } from '@graphql-yoga/subscription';
import { createRedisEventTarget } from '@graphql-yoga/redis-event-target';
import { Redis } from 'ioredis';
import type { Logger } from '../logger';

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
  cause: string;
}

/** Topic → [topic id (the vision id), payload]. */
export type PubSubMap = {
  [Topic.MESSAGE_ADDED]: [visionId: string, payload: StoredMessageEvent];
  [Topic.REPLY_DELTA]: [visionId: string, payload: ReplyDeltaEvent];
  [Topic.REPLY_STOP]: [payload: ReplyStopEvent];
};

export type AppPubSub = PubSub<PubSubMap>;

export interface PubSubBackend {
  pubsub: AppPubSub;
  /** The command connection when Redis is used (also serves the reply buffer). */
  redis?: Redis;
  close(): Promise<void>;
}

/**
 * In memory for one instance; through Redis pub/sub (`@graphql-yoga/redis-event-target` over
 * ioredis) when REDIS_URL is set, so that events reach subscribers on every instance. One
 * publishing connection per instance keeps the order of events per vision.
 */
export async function createPubSubBackend(opts: { redisUrl?: string; logger: Logger }): Promise<PubSubBackend> {
  if (!opts.redisUrl) return { pubsub: createPubSub<PubSubMap>(), close: async () => undefined };
  const connect = (name: string) => {
    const r = new Redis(opts.redisUrl!, { connectionName: `vision-path-${name}`, lazyConnect: true, maxRetriesPerRequest: 3 });
    r.on('error', (err) => opts.logger.warn({ err: err.message, connection: name }, 'redis error'));
    return r;
  };
  const publishClient = connect('pub');
  const subscribeClient = connect('sub');
  await Promise.all([publishClient.connect(), subscribeClient.connect()]);
  const pubsub = createPubSub<PubSubMap>({ eventTarget: createRedisEventTarget({ publishClient, subscribeClient }) });
  opts.logger.info('pub/sub through Redis');
  return {
    pubsub,
    redis: publishClient,
    async close() {
      await Promise.allSettled([publishClient.quit(), subscribeClient.quit()]);
    },
  };
}
