import { Repeater } from '@graphql-yoga/subscription';
import { randomUUID } from 'node:crypto';
import type { SqlRunner } from '../db/sql';
import { Topic, type AppPubSub, type ReplyDeltaEvent } from '../graphql/pubsub';
import { findRepliesFrom, type ReplyRecord } from './dialog.queries';
import type { ReplyEvents } from './reply-events';
import { MessageState } from './vision.enums';

/** Replies replayed by one resume at most (the named one and those after it). */
const MAX_REPLAYED_REPLIES = 10;

/**
 * The `replyDelta` stream of one vision. With `replyId` and/or `afterSeq`, it first replays
 * what the client missed, then continues live, with no gap and no repeat:
 *
 * 1. subscribe to the live topic (events from now on are caught);
 * 2. publish a marker event and wait until it comes back, so the subscription is known to be
 *    live even when Redis confirms subscriptions asynchronously;
 * 3. read the replies from the database (the truth): the named reply (`replyId`, else the newest)
 *    and, after a named one, every later reply; replay each from its buffer (after `afterSeq`
 *    for the named one, from the start for later ones). A reply that ended but whose buffer
 *    lacks the end (expired, lost with Redis, or not yet appended) gets the rest of its stored
 *    text and a `done` event with its stored state, so the end of R1 always comes before R2;
 * 4. then the live events, dropping any seq already sent and anything of a reply already done.
 */
export function replyDeltaStream(opts: {
  pubsub: AppPubSub;
  events: ReplyEvents;
  sql: SqlRunner;
  visionId: string;
  afterSeq?: number | null;
  replyId?: string | null;
  /** How long to wait for the marker before replaying anyway. @default 2000 */
  syncTimeoutMs?: number;
}): Repeater<ReplyDeltaEvent> {
  const { pubsub, visionId } = opts;
  return new Repeater<ReplyDeltaEvent>(async (push, stop) => {
    const live = pubsub.subscribe(Topic.REPLY_DELTA, visionId)[Symbol.asyncIterator]();
    let closed = false;
    void stop.then(() => {
      closed = true;
      void live.return?.();
    });
    const lastSeq = new Map<string, number>();
    const ended = new Set<string>();
    const deliver = async (e: ReplyDeltaEvent) => {
      if (e.seq === 0 || ended.has(e.replyId)) return; // markers are internal
      const seen = lastSeq.get(e.replyId);
      if (seen !== undefined && e.seq <= seen) return;
      lastSeq.set(e.replyId, e.seq);
      if (e.done) ended.add(e.replyId);
      await push(e);
    };

    let next = live.next(); // starts the subscription
    if (opts.afterSeq != null || opts.replyId) {
      const token = `sync:${randomUUID()}`;
      const early: ReplyDeltaEvent[] = [];
      pubsub.publish(Topic.REPLY_DELTA, visionId, { visionId, replyId: token, seq: 0, delta: '', done: false, state: 'streaming' });
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
      const replies = await findRepliesFrom(opts.sql, visionId, opts.replyId ?? null, MAX_REPLAYED_REPLIES);
      for (const [i, reply] of replies.entries()) {
        const after = i === 0 ? (opts.afterSeq ?? 0) : 0;
        for (const e of await replayOf(visionId, reply, after, opts.events, Boolean(opts.replyId) || i > 0)) await deliver(e);
        if (!lastSeq.has(reply.id)) lastSeq.set(reply.id, after);
      }
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

/**
 * What a resuming client gets of one reply: its buffered events after `after`, and, when the
 * reply has ended but the buffer lacks its end, the rest of the stored text and the end.
 * `synthesize` is false for a bare `afterSeq` resume of a reply the buffer no longer knows (a
 * long-finished reply is not news to a client that did not name it).
 */
async function replayOf(visionId: string, reply: ReplyRecord, after: number, events: ReplyEvents, synthesize: boolean): Promise<ReplyDeltaEvent[]> {
  const buffered = await events.buffered(reply.id);
  const out = buffered.filter((e) => e.seq > after);
  if (reply.state === MessageState.STREAMING || buffered.some((e) => e.done)) return out;
  if (!synthesize && buffered.length === 0) return out;
  const chunks = buffered.filter((e) => !e.done);
  const last = chunks.reduce((max, e) => Math.max(max, e.seq), after);
  // the client holds chunks 1..last; the rest of the stored text is known only when the buffer
  // holds all of them (or the client holds none)
  const complete = chunks.length > 0 && chunks.every((e, k) => e.seq === k + 1);
  const sent = complete ? chunks.map((e) => e.delta).join('') : '';
  const rest = complete && reply.content.startsWith(sent) ? reply.content.slice(sent.length) : last === 0 ? reply.content : '';
  const base = { visionId, replyId: reply.id };
  let seq = last;
  if (rest) out.push({ ...base, seq: ++seq, delta: rest, done: false, state: MessageState.STREAMING });
  out.push({ ...base, seq: ++seq, delta: '', done: true, state: reply.state });
  return out;
}
