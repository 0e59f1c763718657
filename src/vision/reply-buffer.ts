import type { Redis } from 'ioredis';
import type { ReplyDeltaEvent } from '../graphql/pubsub';

/**
 * The events of each reply, kept while it streams and a short while after, so that a client
 * that resubscribes with `replyId` + `afterSeq` gets what it missed. One buffer per reply: a
 * resume that names reply R1 finds R1's events even after R2 began. Shared through Redis when
 * there is one (any instance can serve the resume), in memory otherwise. The database is the
 * truth: a buffer may be gone (expired, Redis down), and the resume falls back to the stored
 * message.
 */
export interface ReplyBuffer {
  /** Never awaited by the reply path: a slow or absent Redis must not hold a reply up. */
  append(event: ReplyDeltaEvent): Promise<void>;
  /** Events of the reply in seq order (empty when unknown or expired). */
  read(replyId: string): Promise<ReplyDeltaEvent[]>;
}

/** How long a finished reply's events are kept for late resumes. @default 60 s */
export const KEEP_AFTER_DONE_MS = 60_000;
/** Safety net for replies whose process died. */
const KEEP_MAX_MS = 30 * 60_000;

export class MemoryReplyBuffer implements ReplyBuffer {
  private readonly replies = new Map<string, { events: ReplyDeltaEvent[]; timer: NodeJS.Timeout }>();

  async append(event: ReplyDeltaEvent): Promise<void> {
    let entry = this.replies.get(event.replyId);
    if (!entry) {
      entry = { events: [], timer: this.expire(event.replyId, KEEP_MAX_MS) };
      this.replies.set(event.replyId, entry);
    }
    entry.events.push(event);
    if (event.done) {
      clearTimeout(entry.timer);
      entry.timer = this.expire(event.replyId, KEEP_AFTER_DONE_MS);
    }
  }

  async read(replyId: string): Promise<ReplyDeltaEvent[]> {
    return [...(this.replies.get(replyId)?.events ?? [])];
  }

  private expire(replyId: string, ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => this.replies.delete(replyId), ms);
    timer.unref();
    return timer;
  }
}

/**
 * A Redis list per reply. It must share its connection with the publisher of the events: an
 * RPUSH issued before the PUBLISH of the same event is executed first, so a subscriber that
 * missed the event live finds it in the list without the reply path awaiting either command.
 */
export class RedisReplyBuffer implements ReplyBuffer {
  constructor(private readonly redis: Redis) {}

  private key(replyId: string): string {
    return `vision-path:reply:${replyId}`;
  }

  async append(event: ReplyDeltaEvent): Promise<void> {
    const key = this.key(event.replyId);
    await this.redis
      .multi()
      .rpush(key, JSON.stringify(event))
      .pexpire(key, event.done ? KEEP_AFTER_DONE_MS : KEEP_MAX_MS)
      .exec();
  }

  async read(replyId: string): Promise<ReplyDeltaEvent[]> {
    const items = await this.redis.lrange(this.key(replyId), 0, -1);
    return items.map((s) => JSON.parse(s) as ReplyDeltaEvent);
  }
}
