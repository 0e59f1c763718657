import type { MessageState } from './gql/graphql';

/** What this tab knows of one reply from its `replyDelta` events. */
export interface LiveReply {
  replyId: string;
  /** Last seq applied (chunks 1..seq are in `text` when `whole`). */
  seq: number;
  text: string;
  done: boolean;
  state: MessageState;
  /** False when a chunk was missed and could not be fetched again: show the stored message instead. */
  whole: boolean;
  /** Arrival order, for replies not yet in the feed. */
  order: number;
}

export interface DeltaEvent {
  replyId: string;
  seq: number;
  delta: string;
  done: boolean;
  state: MessageState;
}

/** Where to resume the subscription: the reply we were reading and the last seq we hold. */
export interface ResumePoint {
  replyId: string;
  afterSeq: number;
}

/**
 * The replies streaming into one vision, assembled from `replyDelta` events. Events are
 * numbered per reply; a repeated seq (a resumed subscription replays) is dropped, and a gap (the
 * socket was away, or the subscription started after the reply did) asks for a resume from the
 * last seq held, once per reply: the server then sends the rest of that reply, every later
 * reply, and the live events, with no gap and no repeat.
 */
export class LiveReplies {
  private replies = new Map<string, LiveReply>();
  private resumed = new Set<string>();
  private counter = 0;
  private listeners = new Set<() => void>();
  private snapshot: ReadonlyMap<string, LiveReply> = new Map();

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): ReadonlyMap<string, LiveReply> => this.snapshot;

  /** Applies one event; returns a resume point when a gap calls for one. */
  apply(e: DeltaEvent): ResumePoint | undefined {
    const cur = this.replies.get(e.replyId) ?? {
      replyId: e.replyId,
      seq: 0,
      text: '',
      done: false,
      state: 'STREAMING' as MessageState,
      whole: true,
      order: ++this.counter,
    };
    if (cur.done || e.seq <= cur.seq) return undefined;
    let next: LiveReply;
    if (e.seq !== cur.seq + 1) {
      if (!this.resumed.has(e.replyId)) {
        this.resumed.add(e.replyId);
        this.replies.set(e.replyId, cur);
        this.publish();
        return { replyId: e.replyId, afterSeq: cur.seq };
      }
      next = { ...cur, seq: e.seq, text: cur.text + e.delta, whole: false };
    } else {
      next = { ...cur, seq: e.seq, text: cur.text + e.delta };
    }
    if (e.done) {
      next.done = true;
      next.state = e.state;
    }
    this.replies.set(e.replyId, next);
    this.publish();
    return undefined;
  }

  /** Forgets replies the feed shows in their final state (the stored message is the truth). */
  forget(replyIds: Iterable<string>): void {
    let changed = false;
    for (const id of replyIds) changed = this.replies.delete(id) || changed;
    if (changed) this.publish();
  }

  private publish(): void {
    this.snapshot = new Map(this.replies);
    for (const l of this.listeners) l();
  }
}
