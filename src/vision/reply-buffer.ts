import type { Redis } from 'ioredis';
import type { ReplyDeltaEvent } from '../graphql/pubsub';

/**
 * The events of the reply in progress for each vision, so that a client that resubscribes with
 * `afterSeq` gets what it missed. Shared through Redis when there is one (any instance can serve
 * the resume), in memory otherwise. After a reply is done its events stay a short while; then
 * the stored message is the source of truth.
 */
export interface ReplyBuffer {
  /** Forgets the previous reply of the vision. */
  begin(visionId: string, replyId: string): Promise<void>;
  append(event: ReplyDeltaEvent): Promise<void>;
  /** Events of the latest reply of the vision, in seq order. */
  read(visionId: string): Promise<ReplyDeltaEvent[]>;
}

/** How long a finished reply's events are kept for late resumes. @default 60 s */
const KEEP_AFTER_DONE_MS = 60_000;
/** Safety net for replies whose process died. */
const KEEP_MAX_MS = 30 * 60_000;

export class MemoryReplyBuffer implements ReplyBuffer {
  private readonly replies = new Map<string, { replyId: string; events: ReplyDeltaEvent[]; timer?: NodeJS.Timeout }>();

  async begin(visionId: string, replyId: string): Promise<void> {
    this.drop(visionId);
    const entry = { replyId, events: [] as ReplyDeltaEvent[], timer: setTimeout(() => this.drop(visionId), KEEP_MAX_MS) };
    entry.timer.unref();
    this.replies.set(visionId, entry);
  }

  async append(event: ReplyDeltaEvent): Promise<void> {
    const entry = this.replies.get(event.visionId);
    if (!entry || entry.replyId !== event.replyId) return;
    entry.events.push(event);
    if (event.done) {
      clearTimeout(entry.timer);
      entry.timer = setTimeout(() => this.drop(event.visionId), KEEP_AFTER_DONE_MS);
      entry.timer.unref();
    }
  }

  async read(visionId: string): Promise<ReplyDeltaEvent[]> {
    return [...(this.replies.get(visionId)?.events ?? [])];
  }

  private drop(visionId: string): void {
    const entry = this.replies.get(visionId);
    if (entry) clearTimeout(entry.timer);
    this.replies.delete(visionId);
  }
}

export class RedisReplyBuffer implements ReplyBuffer {
  constructor(private readonly redis: Redis) {}

  private key(visionId: string): string {
    return `vision-path:reply:${visionId}`;
  }

  async begin(visionId: string, _replyId: string): Promise<void> {
    await this.redis.del(this.key(visionId));
  }

  async append(event: ReplyDeltaEvent): Promise<void> {
    const key = this.key(event.visionId);
    await this.redis
      .multi()
      .rpush(key, JSON.stringify(event))
      .pexpire(key, event.done ? KEEP_AFTER_DONE_MS : KEEP_MAX_MS)
      .exec();
  }

  async read(visionId: string): Promise<ReplyDeltaEvent[]> {
    const items = await this.redis.lrange(this.key(visionId), 0, -1);
    const events = items.map((s) => JSON.parse(s) as ReplyDeltaEvent);
    // a list can only hold one reply (begin clears it), but be strict anyway
    const last = events[events.length - 1];
    return last ? events.filter((e) => e.replyId === last.replyId) : [];
  }
}
