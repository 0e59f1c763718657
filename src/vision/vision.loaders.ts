import DataLoader from 'dataloader';
import { queryRows, uuidArray, type SqlRunner } from '../db/sql';
import type { TokenUsage } from '../tokenscount/token-usage.type';
import { sumUsageByMeta } from '../tokenscount/tokenscount.service';
import { File } from './file.entity';
import type { VisionMessage } from './message.entity';
import { countMessages, findLastMessages, findMessagePages, type MessagePageKey } from './message.queries';

/**
 * Per-request batching: every field below a list of visions costs one statement per field,
 * however many visions the list has. Created on first use by the operation's context.
 */
export interface VisionLoaders {
  /** A page of messages (take + 1 rows) per (vision, page request). */
  messagePage: DataLoader<MessagePageKey, VisionMessage[], string>;
  /** The newest message per vision. */
  lastMessage: DataLoader<string, VisionMessage | null>;
  messageCount: DataLoader<string, number>;
  tokenUsage: DataLoader<string, TokenUsage>;
  /** Files by id; the message's vision is checked by the resolver. */
  file: DataLoader<string, File | null>;
  /**
   * What the list read in its own statement, by vision id: the field resolvers answer from here
   * synchronously (a primed DataLoader still answers each of the 50 visions with a promise).
   */
  known: { lastMessage: Map<string, VisionMessage | null>; tokenUsage: Map<string, TokenUsage> };
}

/** The cache key of a message page: what the page query depends on. */
export const messagePageKey = (k: MessagePageKey): string => JSON.stringify([k.visionId, k.req.direction, k.req.take, k.req.afterId, k.req.beforeId]);

export function createVisionLoaders(em: SqlRunner): VisionLoaders {
  return {
    messagePage: new DataLoader((keys) => findMessagePages(em, keys), {
      cacheKeyFn: messagePageKey,
    }),
    lastMessage: new DataLoader((ids) => findLastMessages(em, ids)),
    messageCount: new DataLoader((ids) => countMessages(em, ids)),
    tokenUsage: new DataLoader((ids) => sumUsageByMeta(em, 'visionid', ids)),
    file: new DataLoader(async (ids) => {
      const rows = await queryRows(em, 'select * from files where id = any(?::uuid[])', [uuidArray(ids)]);
      const map = new Map(rows.map((r) => [String(r.id), File.fromRow(r)]));
      return ids.map((id) => map.get(id) ?? null);
    }),
    known: { lastMessage: new Map(), tokenUsage: new Map() },
  };
}
