import { Repeater } from '@graphql-yoga/subscription';
import { randomUUID } from 'node:crypto';
import { Topic, type AppPubSub, type ReplyDeltaEvent } from '../graphql/pubsub';
import type { ReplyBuffer } from './reply-buffer';

/**
 * The `replyDelta` stream of one vision. With `afterSeq`, it first replays the buffered chunks of
 * the reply in progress after that number, then continues live, with no gap and no repeat:
 *
 * 1. subscribe to the live topic (events from now on are caught);
 * 2. publish a marker event and wait until it comes back, so the subscription is known to be
 *    live even when Redis confirms subscriptions asynchronously;
 * 3. read the buffer (every event appended before its publish is there), send what follows
 *    `afterSeq`, then the live events, dropping any seq already sent.
 */
export function replyDeltaStream(opts: {
  pubsub: AppPubSub;
  buffer: ReplyBuffer;
  visionId: string;
  afterSeq?: number | null;
  /** How long to wait for the marker before replaying anyway. @default 2000 */
  syncTimeoutMs?: number;
}): Repeater<ReplyDeltaEvent> {
  const { pubsub, buffer, visionId } = opts;
  return new Repeater<ReplyDeltaEvent>(async (push, stop) => {
    const live = pubsub.subscribe(Topic.REPLY_DELTA, visionId)[Symbol.asyncIterator]();
    let closed = false;
    void stop.then(() => {
      closed = true;
      void live.return?.();
    });
    const lastSeq = new Map<string, number>();
    const deliver = async (e: ReplyDeltaEvent) => {
      if (e.seq === 0) return; // markers are internal
      const seen = lastSeq.get(e.replyId);
      if (seen !== undefined && e.seq <= seen) return;
      lastSeq.set(e.replyId, e.seq);
      await push(e);
    };

    let next = live.next(); // starts the subscription
    if (opts.afterSeq != null) {
      const token = `sync:${randomUUID()}`;
      const early: ReplyDeltaEvent[] = [];
      await pubsub.publish(Topic.REPLY_DELTA, visionId, { visionId, replyId: token, seq: 0, delta: '', done: false, state: 'streaming' });
      const deadline = Date.now() + (opts.syncTimeoutMs ?? 2000);
      for (;;) {
        let timer: NodeJS.Timeout | undefined;
        const r = await Promise.race([next, new Promise<null>((res) => (timer = setTimeout(() => res(null), Math.max(0, deadline - Date.now()))))]);
        clearTimeout(timer);
        if (r === null) break; // no marker in time: replay anyway, `next` stays pending
        if (r.done || closed) return stop();
        next = live.next();
        if (r.value.replyId === token) break;
        early.push(r.value);
      }
      const backlog = await buffer.read(visionId);
      if (backlog[0]) lastSeq.set(backlog[0].replyId, opts.afterSeq);
      for (const e of backlog) await deliver(e);
      for (const e of early) await deliver(e);
    }
    for (;;) {
      const r = await next;
      if (r.done || closed) break;
      next = live.next();
      await deliver(r.value);
    }
    stop();
  });
}
