import { queryRows, type SqlOn, uuidArray } from '../db/sql';
import type { Logger } from '../logger';
import { eligibleSql } from '../memory/memory.queries';
import { MESSAGE_COLUMNS, VisionMessage } from '../vision/message.entity';
import type { EmbeddingService } from './embedder';
import type { SearchConfig } from './search.config';
import type { VectorStore } from './vector-store';

export interface RecalledMessage {
  message: VisionMessage;
  score: number;
}

export interface RecallRequest {
  visionId: string;
  /** The user message the reply answers (or the latest one, for `Vision.context`). */
  latest: VisionMessage;
  /** Only messages older than this one: the oldest the window may hold. */
  beforeMessageId: string;
  /**
   * The owner, when the latest message may be embedded now (before a reply, metered); unset: only
   * a stored embedding is used (the `Vision.context` view never calls the model).
   */
  embedFor?: string;
  /** The latest message's vector, already asked for ({@link Recall.embedNew}); null when that failed. */
  vector?: Promise<number[] | null>;
}

/**
 * Recall: older messages outside the window that bear on the latest user message (cosine
 * similarity of their embeddings at least RECALL_MIN_SCORE, at most RECALL_MAX, best first).
 * Never fails a reply: without an embedding (endpoint down, recall off) nothing is recalled.
 */
export class Recall {
  constructor(
    private readonly deps: { config: SearchConfig; embeddings: EmbeddingService; store: VectorStore; logger: Logger },
  ) {}

  get enabled(): boolean {
    return this.deps.config.embeddings && this.deps.config.recallMax > 0;
  }

  /**
   * Embeds a message just stored (it has no embedding yet) for recall, metered; the vector is
   * stored in the background. Never rejects: null when the call failed (the reply goes on).
   */
  embedNew(userId: string, m: { id: string; visionId: string; content: string }, stored?: Promise<boolean>): Promise<number[] | null> {
    return this.deps.embeddings.embedMessage(userId, m, { background: true, stored }).catch((err: unknown) => {
      this.deps.logger.warn({ err, visionId: m.visionId }, 'recall skipped: the latest message could not be embedded');
      return null;
    });
  }

  async recall(sql: SqlOn, r: RecallRequest): Promise<RecalledMessage[]> {
    if (!this.enabled) return [];
    const { embeddings, store, config } = this.deps;
    let vector: number[] | null;
    try {
      if (r.vector) vector = await r.vector;
      else {
        vector = await embeddings.storedVector(r.latest.id);
        if (!vector && r.embedFor) vector = await this.embedNew(r.embedFor, r.latest);
      }
    } catch (err) {
      this.deps.logger.warn({ err, visionId: r.visionId }, 'recall skipped: the latest message has no embedding');
      return [];
    }
    if (!vector) return [];
    try {
      const near = await store.nearest(sql, {
        visionIds: [r.visionId],
        model: embeddings.model,
        vector,
        limit: config.recallMax,
        minScore: config.recallMinScore,
        beforeMessageId: r.beforeMessageId,
      });
      if (!near.length) return [];
      const rows = await queryRows(
        sql,
        `select ${MESSAGE_COLUMNS} from vision_messages where id = any(?::uuid[]) and ${eligibleSql()}`,
        [uuidArray(near.map((n) => n.messageId))],
      );
      const byId = new Map(rows.map((row) => [String(row.id), VisionMessage.fromRow(row)]));
      return near.flatMap((n) => {
        const message = byId.get(n.messageId);
        return message ? [{ message, score: n.score }] : [];
      });
    } catch (err) {
      // a reply without recalled moments beats a failed reply
      this.deps.logger.warn({ err, visionId: r.visionId }, 'recall skipped: the nearest messages could not be read');
      return [];
    }
  }
}
