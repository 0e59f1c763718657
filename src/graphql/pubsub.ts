import { createPubSub, type PubSub } from '@graphql-yoga/subscription';

export enum Topic {
  MESSAGE_ADDED = 'MESSAGE_ADDED',
  REPLY_DELTA = 'REPLY_DELTA',
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
  seq: number;
  delta: string;
  done: boolean;
  state: string;
}

/** Topic → [topic id (the vision id), payload]. */
export type PubSubMap = {
  [Topic.MESSAGE_ADDED]: [visionId: string, payload: StoredMessageEvent];
  [Topic.REPLY_DELTA]: [visionId: string, payload: ReplyDeltaEvent];
};

export type AppPubSub = PubSub<PubSubMap>;

/** In-memory pub/sub; issue 4 swaps in a Redis event target when REDIS_URL is set. */
export function createAppPubSub(): AppPubSub {
  return createPubSub<PubSubMap>();
}
