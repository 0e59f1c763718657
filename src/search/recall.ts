import { queryRows, type SqlOn, uuidArray } from '../db/sql';
import type { Logger } from '../logger';
import { eligibleSql } from '../memory/memory.queries';
import { MESSAGE_COLUMNS, messageColumns, VisionMessage } from '../vision/message.entity';
import type { EmbeddingService } from './embedder';
import type { SearchConfig } from './search.config';
import type { VectorStore } from './vector-store';

/** Recall reads the store's new rows at most this often per vision (the float4 store's sign index). */
const WARM_EVERY_MS = 1000;
/** How old the sign index may be for recall to use it without waiting for a read. */
const RECALL_INDEX_AGE_MS = 10_000;

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
  /** The messages from `beforeMessageId` on, when the caller has them (the plan's window candidates). */
  windowIds?: readonly string[];
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
  embedNew(userId: string, m: VisionMessage): Promise<number[] | null> {
    return this.deps.embeddings.embedMessage(userId, m, { background: true }).catch((err: unknown) => {
      this.deps.logger.warn({ err, visionId: m.visionId }, 'recall skipped: the latest message could not be embedded');
      return null;
    });
  }

  /** Readies the vector store for this vision's recall (the sign index reads what is new) while the message is embedded. Never rejects. */
  warm(sql: SqlOn, visionId: string): Promise<void> {
    const { store, embeddings, config } = this.deps;
    if (!this.enabled || !store.warm) return Promise.resolve();
    return store.warm(sql, [visionId], embeddings.model, config.embeddingDimensions, WARM_EVERY_MS).catch((err: unknown) => {
      this.deps.logger.warn({ err, visionId }, 'warming the vector store for recall failed');
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
        windowIds: r.windowIds,
        // warmed at the start of the plan, in the background: the reply does not wait for that read
        // unless the index is older than this (what was embedded in the last seconds is, but for
        // a backfill, inside the window anyway)
        freshWithinMs: RECALL_INDEX_AGE_MS,
        // the messages come with their vectors where the store can (one round trip less)
        withMessages: { columns: messageColumns('m'), eligible: eligibleSql('m') },
      });
      if (!near.length) return [];
      const missing = near.filter((n) => !n.row).map((n) => n.messageId);
      const rows = missing.length
        ? await queryRows(sql, `select ${MESSAGE_COLUMNS} from vision_messages where id = any(?::uuid[]) and ${eligibleSql()}`, [uuidArray(missing)])
        : [];
      const byId = new Map([...near.flatMap((n) => (n.row ? [n.row] : [])), ...rows].map((row) => [String(row.id), VisionMessage.fromRow(row)]));
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
