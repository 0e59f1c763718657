import type { SqlRunner } from '../db/sql';
import { BadUserInputError, NotFoundError } from '../graphql/errors';
import { isUuid, parseId } from '../graphql/relay';
import type { Logger } from '../logger';
import { wellFormed } from '../vision/vision.service';
import { EmbeddingFailedError, type EmbeddingService } from './embedder';
import type { SearchConfig } from './search.config';
import { loadHits, LT_HOLD, MARK_END, MARK_START, searchableVisionIds, textSearch, type TextHit } from './search.queries';
import { SearchMode } from './search.types';
import { byScore, type VectorStore } from './vector-store';

export const MAX_QUERY_CHARS = 500;
/** Reciprocal rank fusion's constant (Cormack et al.): ranks below ~60 weigh about the same. */
const RRF_K = 60;
const DEFAULT_FIRST = 20;

export interface SearchArgs {
  query: string;
  visionId?: string | null;
  mode?: SearchMode | null;
  first?: number | null;
  after?: string | null;
}

export interface SearchHitResult {
  cursor: string;
  hit: {
    message: import('../vision/message.entity').VisionMessage;
    vision: import('../vision/vision.entity').Vision;
    snippet: string;
    highlights: { start: number; length: number }[];
    score: number;
  };
}

export interface SearchPage {
  hits: SearchHitResult[];
  hasNextPage: boolean;
  hasPreviousPage: boolean;
  /** Set when SEMANTIC or HYBRID could not embed the query and TEXT answered instead. */
  warning?: { code: string; message: string };
}

interface Position {
  mode: SearchMode;
  score: number;
  id: string;
}

const CURSOR_PREFIX = 's1:';

export function encodeSearchCursor(p: Position): string {
  return Buffer.from(`${CURSOR_PREFIX}${p.mode}:${p.score}:${p.id}`, 'utf8').toString('base64url');
}

export function decodeSearchCursor(cursor: string): Position {
  const raw = /^[A-Za-z0-9_-]{1,200}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const m = /^s1:(TEXT|SEMANTIC|HYBRID):([^:]+):(.+)$/.exec(raw);
  const score = m ? Number(m[2]) : NaN;
  if (!m || !Number.isFinite(score) || !isUuid(m[3])) throw new BadUserInputError('after is not a valid cursor', 'after');
  return { mode: m[1] as SearchMode, score, id: m[3]!.toLowerCase() };
}

/** Snippet and highlight ranges (UTF-16 code units) from a marked headline. */
export function snippetOf(headline: string): { snippet: string; highlights: { start: number; length: number }[] } {
  let snippet = '';
  const highlights: { start: number; length: number }[] = [];
  let open = -1;
  for (const ch of headline.replace(/\s+/g, ' ').trim()) {
    if (ch === MARK_START) open = snippet.length;
    else if (ch === MARK_END) {
      if (open >= 0 && snippet.length > open) highlights.push({ start: open, length: snippet.length - open });
      open = -1;
    } else snippet += ch === LT_HOLD ? '<' : ch;
  }
  return { snippet, highlights };
}


/**
 * Search over the caller's messages (seed §4 "векторизация сообщений"): TEXT by PostgreSQL
 * full-text search, SEMANTIC by the cosine similarity of embeddings, HYBRID fusing both rankings
 * by reciprocal rank. Pages by opaque keyset cursors (score, id), stable while the data is.
 */
export class SearchService {
  constructor(
    private readonly deps: { sql: SqlRunner; config: SearchConfig; maxPageSize: number; embeddings: EmbeddingService; store: VectorStore; logger: Logger },
  ) {}

  async search(userId: string, args: SearchArgs): Promise<SearchPage> {
    const query = this.validateQuery(args.query);
    const take = this.validateFirst(args.first);
    const after = args.after != null ? decodeSearchCursor(args.after) : undefined;
    const visionId = args.visionId != null ? parseId(args.visionId, 'visionId') : undefined;
    let mode = args.mode ?? SearchMode.HYBRID;
    if (after && after.mode !== mode && !(after.mode === SearchMode.TEXT && mode !== SearchMode.TEXT)) {
      throw new BadUserInputError(`after is a cursor of a ${after.mode} search, not ${mode}`, 'after');
    }

    const sql = this.deps.sql;
    const visionIds = await searchableVisionIds(sql, userId, visionId);
    if (visionId && !visionIds.length) throw new NotFoundError();

    let warning: SearchPage['warning'];
    let vector: number[] | undefined;
    // a page after one answered by TEXT (the endpoint was down) goes on with TEXT
    if (mode !== SearchMode.TEXT && after?.mode === SearchMode.TEXT) mode = SearchMode.TEXT;
    if (mode !== SearchMode.TEXT) {
      try {
        if (!this.deps.embeddings.enabled) throw new Error('embeddings are turned off (EMBEDDINGS=false)');
        vector = await this.deps.embeddings.embedQuery(userId, query);
      } catch (err) {
        const why = err instanceof EmbeddingFailedError ? err.result.reason : (err as Error).message;
        this.deps.logger.warn({ err, mode }, 'semantic search unavailable; answering with TEXT');
        warning = { code: 'SEARCH_FELL_BACK_TO_TEXT', message: `${mode} search is unavailable right now (${why}); these are TEXT results` };
        mode = SearchMode.TEXT;
      }
    }

    let ranked: TextHit[];
    let hasNextPage: boolean;
    if (mode === SearchMode.TEXT) {
      const rows = await textSearch(sql, { visionIds, query, limit: take + 1, after, depth: this.deps.config.textDepth });
      hasNextPage = rows.length > take;
      ranked = rows.slice(0, take);
    } else {
      const all = mode === SearchMode.SEMANTIC ? await this.semantic(visionIds, vector!) : await this.hybrid(visionIds, query, vector!);
      const from = after ? all.findIndex((h) => byScore(h, after) > 0) : 0;
      const rest = from < 0 ? [] : all.slice(from);
      hasNextPage = rest.length > take;
      ranked = rest.slice(0, take);
    }

    const loaded = await loadHits(sql, ranked.map((h) => h.id), query);
    const hits: SearchHitResult[] = [];
    for (const h of ranked) {
      const l = loaded.get(h.id);
      if (!l) continue; // deleted between the two statements
      hits.push({ cursor: encodeSearchCursor({ mode, score: h.score, id: h.id }), hit: { message: l.message, vision: l.vision, ...snippetOf(l.headline), score: h.score } });
    }
    return { hits, hasNextPage, hasPreviousPage: after !== undefined, warning };
  }

  private semantic(visionIds: string[], vector: number[]): Promise<TextHit[]> {
    const { config, store, embeddings } = this.deps;
    return store
      .nearest(this.deps.sql, { visionIds, model: embeddings.model, vector, limit: config.semanticDepth, minScore: config.searchMinScore })
      .then((n) => n.map((x) => ({ id: x.messageId, score: x.score })).sort(byScore));
  }

  private async hybrid(visionIds: string[], query: string, vector: number[]): Promise<TextHit[]> {
    const depth = this.deps.config.semanticDepth;
    const [text, meaning] = await Promise.all([textSearch(this.deps.sql, { visionIds, query, limit: depth, depth: this.deps.config.textDepth }), this.semantic(visionIds, vector)]);
    const fused = new Map<string, number>();
    text.forEach((h, i) => fused.set(h.id, (fused.get(h.id) ?? 0) + 1 / (RRF_K + i + 1)));
    meaning.forEach((h, i) => fused.set(h.id, (fused.get(h.id) ?? 0) + 1 / (RRF_K + i + 1)));
    return [...fused].map(([id, score]) => ({ id, score })).sort(byScore);
  }

  private validateQuery(raw: string): string {
    const query = raw.trim();
    if (!query) throw new BadUserInputError('query must not be empty', 'query');
    if (query.length > MAX_QUERY_CHARS) throw new BadUserInputError(`query must be at most ${MAX_QUERY_CHARS} characters`, 'query');
    if (!wellFormed(query)) throw new BadUserInputError('query must be valid Unicode (no lone surrogates)', 'query');
    return query;
  }

  private validateFirst(first: number | null | undefined): number {
    if (first == null) return Math.min(DEFAULT_FIRST, this.deps.maxPageSize);
    if (!Number.isInteger(first) || first < 1) throw new BadUserInputError('first must be a positive integer', 'first');
    if (first > this.deps.maxPageSize) throw new BadUserInputError(`first must be at most ${this.deps.maxPageSize}`, 'first');
    return first;
  }
}
