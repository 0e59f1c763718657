import { limitSql, queryRows, type SqlOn, uuidArray } from '../db/sql';
import { eligibleSql } from '../memory/memory.queries';
import { messageColumns, VisionMessage } from '../vision/message.entity';
import { Vision } from '../vision/vision.entity';

/**
 * The messages search returns: what a model sees (user and assistant, COMPLETE or STOPPED, with
 * text). The first three conditions are the GIN index's predicate, so the index is used.
 */
const SEARCHABLE = eligibleSql('m');

/** The text search configuration: Russian stems for Cyrillic words, English stems for Latin ones. */
const TS_CONFIG = `'russian'::regconfig`;

/** Marks around the matched words of a headline; never in a snippet (removed from the content first). */
export const MARK_START = '\uE000';
export const MARK_END = '\uE001';
/** Stands for '<' inside a headline (see loadHits); turned back by the snippet. */
export const LT_HOLD = '\uE002';

export interface TextHit {
  id: string;
  score: number;
}

/** The caller's visions a search looks in: one (any status) when named, else all but DELETED. */
export async function searchableVisionIds(on: SqlOn, userId: string, visionId?: string): Promise<string[]> {
  const rows = visionId
    ? await queryRows<{ id: string }>(on, `select id from visions where id = ? and userid = ?`, [visionId, userId])
    : await queryRows<{ id: string }>(on, `select id from visions where userid = ? and status <> 'deleted'`, [userId]);
  return rows.map((r) => r.id);
}

/**
 * Full-text matches, best first (`ts_rank_cd` normalised to 0..1, then newest id), after a
 * keyset position. `websearch_to_tsquery`: quoted phrases, `or`, `-word`.
 */export interface TextSearchRequest {
  visionIds: readonly string[];
  query: string;
  limit: number;
  after?: { score: number; id: string };
  /** The newest matches ranked at most (SEARCH_TEXT_DEPTH). */
  depth: number;
}

export async function textSearch(on: SqlOn, q: TextSearchRequest): Promise<TextHit[]> {
  if (!q.visionIds.length) return [];
  const { sql, params } = textSearchStatement(q);
  const rows = await queryRows<{ id: string; score: number }>(on, sql, params);
  return rows.map((r) => ({ id: r.id, score: Number(r.score) }));
}

/**
 * The statement of {@link textSearch} (`?` placeholders), also for EXPLAIN in tests. The newest
 * `depth` matches are ranked (`ts_rank_cd` reads each one's positions: for a word in thousands of
 * messages, ranking all of them was most of the time), then ordered by rank.
 */
export function textSearchStatement(q: TextSearchRequest): { sql: string; params: unknown[] } {
  const params: unknown[] = [q.query, uuidArray(q.visionIds)];
  let keyset = '';
  if (q.after) {
    keyset = 'where (t.score, t.id) < (?::float8, ?::uuid)';
    params.push(q.after.score, q.after.id);
  }
  return {
    sql: `select t.id, t.score from (
       select c.id, ts_rank_cd(c.searchtsv, q, 32)::float8 as score
       from websearch_to_tsquery(${TS_CONFIG}, ?) as q,
       lateral (
         select m.id, m.searchtsv from vision_messages m
         where m.visionid = any(?::uuid[]) and ${SEARCHABLE} and m.searchtsv @@ q
         order by m.createdat desc ${limitSql(q.depth)}
       ) c
     ) t ${keyset}
     order by t.score desc, t.id desc ${limitSql(q.limit)}`,
    params,
  };
}

export interface LoadedHit {
  message: VisionMessage;
  vision: Vision;
  /** The best fragment with {@link MARK_START}/{@link MARK_END} around matched words. */
  headline: string;
}

/** The messages of a page, their visions and a headline of each, in one statement. */
export async function loadHits(on: SqlOn, ids: readonly string[], query: string): Promise<Map<string, LoadedHit>> {
  if (!ids.length) return new Map();
  const rows = await queryRows<Record<string, unknown>>(
    on,
    `select ${messageColumns('m')},
       ts_headline(${TS_CONFIG}, translate(m.content, ?, ?), websearch_to_tsquery(${TS_CONFIG}, ?),
         'StartSel="${MARK_START}", StopSel="${MARK_END}", MaxWords=30, MinWords=12, MaxFragments=1, ShortWord=2') as _headline,
       row_to_json(v) as _vision
     from vision_messages m join visions v on v.id = m.visionid
     where m.id = any(?::uuid[])`,
    // the markers cannot occur in the text; '<' is held as LT_HOLD, or the parser would take `<b>` for a tag and drop it
    [MARK_START + MARK_END + LT_HOLD + '<', '   ' + LT_HOLD, query, uuidArray(ids)],
  );
  const out = new Map<string, LoadedHit>();
  for (const row of rows) {
    const vision = Vision.fromRow(row._vision as Record<string, unknown>);
    out.set(String(row.id), { message: VisionMessage.fromRow(row), vision, headline: String(row._headline ?? '') });
  }
  return out;
}
