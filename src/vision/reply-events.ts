import { Topic, type AppPubSub, type ReplyDeltaEvent, type StoredMessageEvent } from '../graphql/pubsub';
import type { Logger } from '../logger';
import type { VisionMessage } from './message.entity';
import type { ReplyBuffer } from './reply-buffer';

export function toMessageEvent(m: VisionMessage): StoredMessageEvent {
  return {
    id: m.id,
    visionId: m.visionId,
    sender: m.sender,
    type: m.type,
    content: m.content,
    state: m.state,
    payload: m.payload ?? null,
    createdAt: m.createdAt.toISOString(),
  };
}

/**
 * Where the events of replies go: the reply buffer (for resumes) and pub/sub (live). Nothing
 * here is awaited by the reply path: the database is the truth, and a slow Redis must not hold
 * a reply up.
 */
export class ReplyEvents {
  /** Replies whose buffer append failed: logged once each, not once per chunk. */
  private readonly unbuffered = new Set<string>();

  constructor(private readonly deps: { pubsub: AppPubSub; replyBuffer: ReplyBuffer; logger: Logger }) {}

  /** Buffered first, then published (in this order on one connection): a resuming subscriber finds every event in one of the two. */
  delta(event: ReplyDeltaEvent): void {
    this.deps.replyBuffer.append(event).catch((err) => {
      if (this.unbuffered.has(event.replyId)) return;
      if (this.unbuffered.size > 1000) this.unbuffered.clear();
      this.unbuffered.add(event.replyId);
      this.deps.logger.warn({ err: String(err), replyId: event.replyId }, 'reply buffer unavailable: a resume of this reply falls back to the stored message');
    });
    if (event.done) this.unbuffered.delete(event.replyId);
    this.deps.pubsub.publish(Topic.REPLY_DELTA, event.visionId, event);
  }

  message(m: VisionMessage): void {
    this.deps.pubsub.publish(Topic.MESSAGE_ADDED, m.visionId, toMessageEvent(m));
  }

  /** The end of a reply, from every path that ends one: the `done` event with its final state, then the stored message. */
  ended(final: VisionMessage, seq: number): void {
    this.delta({ visionId: final.visionId, replyId: final.id, seq, delta: '', done: true, state: final.state });
    this.message(final);
  }

  /** The buffered events of a reply; empty when the buffer cannot be read. */
  async buffered(replyId: string): Promise<ReplyDeltaEvent[]> {
    try {
      return await this.deps.replyBuffer.read(replyId);
    } catch (err) {
      this.deps.logger.warn({ err: String(err), replyId }, 'reply buffer unavailable');
      return [];
    }
  }
}
