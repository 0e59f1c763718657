import type { SqlRunner } from '../db/sql';
import type { Logger } from '../logger';
import { settleAbandonedCalls } from '../tokenscount/call-model';
import type { PriceTable } from '../tokenscount/prices';
import { closeStaleReply, findStaleReplies } from './dialog.queries';
import type { VisionMessage } from './message.entity';
import type { ReplyEvents } from './reply-events';

/**
 * Closes replies left STREAMING by dead processes: a reply whose heartbeat is older than
 * REPLY_STALE_MS is stored FAILED (reason interrupted), with the fullest text known (the reply
 * buffer may hold chunks that arrived after the last save), and its end is published like any
 * other (`done` and `messageAdded`), so no subscriber waits for it forever. Runs at start and
 * every REPLY_STALE_MS / 2 on every instance; the closing statement re-checks staleness, so two
 * instances never close the same reply twice.
 */
export class StaleReplySweeper {
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly deps: {
      sql: SqlRunner;
      staleMs: number;
      events: ReplyEvents;
      logger: Logger;
      /** Whether this process runs the reply (it is never stale then, only slow to save). */
      isLocal(replyId: string): boolean;
      /** A tokenscount row still pending after this long belongs to a dead process (no live call lasts that long). */
      abandonedCallMs: number;
      /** Prices the rows it settles. */
      prices?: PriceTable;
      /** Called for each reply closed here (e.g. to settle the model call's tokenscount row). */
      onClosed?(reply: VisionMessage): Promise<void>;
    },
  ) {}

  async start(): Promise<void> {
    await this.sweep();
    this.timer = setInterval(() => {
      this.sweep().catch((err) => this.deps.logger.warn({ err }, 'closing stale replies failed'));
    }, Math.max(500, this.deps.staleMs / 2));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Closes the stale replies (of one vision, or all); how many were closed. */
  async sweep(visionId?: string): Promise<number> {
    const { sql, staleMs, events, logger } = this.deps;
    const stale = await findStaleReplies(sql, staleMs, visionId);
    let closed = 0;
    for (const r of stale) {
      if (this.deps.isLocal(r.id)) continue;
      const buffered = (await events.buffered(r.id)).filter((e) => !e.done);
      const text = buffered.map((e) => e.delta).join('');
      // the buffer holds every chunk that was sent; the row only what was saved
      const content = text.length > r.content.length && text.startsWith(r.content) ? text : r.content;
      const final = await closeStaleReply(sql, { id: r.id, content, staleMs });
      if (!final) continue;
      closed++;
      const lastSeq = buffered.reduce((max, e) => Math.max(max, e.seq), 0);
      events.ended(final, lastSeq + 1);
      await this.deps.onClosed?.(final).catch((err) => logger.warn({ err, replyId: final.id }, 'settling a closed reply failed'));
    }
    if (closed) logger.warn({ replies: closed }, 'closed replies left STREAMING by a stopped process');
    // after the replies: a reply closed above settles its row with an estimate from its text
    if (!visionId) {
      const calls = await settleAbandonedCalls(sql, { olderThanMs: this.deps.abandonedCallMs, prices: this.deps.prices });
      if (calls) logger.warn({ calls }, 'settled tokenscount rows of calls whose process died');
    }
    return closed;
  }
}
