import { v7 as uuidv7 } from 'uuid';
import { limitSql, queryRows, type SqlOn, uuidArray } from '../db/sql';
import { VisionMessage, MESSAGE_COLUMNS } from '../vision/message.entity';
import { VisionSummary } from './summary.entity';

/**
 * The statements of the memory module. "Eligible" messages are those a model ever sees: user and
 * assistant messages that are COMPLETE or STOPPED with some text (no FAILED replies, no system or
 * info messages), the same rule as the history window.
 */
export function eligibleSql(alias?: string): string {
  const c = alias ? `${alias}.` : '';
  return `${c}sender in ('user', 'assistant') and ${c}messagetype <> 'info' and ${c}state in ('complete', 'stopped') and ${c}content <> ''`;
}
const ELIGIBLE = eligibleSql();

/** The summaries in use of several visions (for the `Vision.summary` loader). */
export async function findLatestSummaries(on: SqlOn, visionIds: readonly string[]): Promise<Map<string, VisionSummary>> {
  const rows = await queryRows(
    on,
    `select distinct on (visionid) * from vision_summaries where visionid = any(?::uuid[]) order by visionid, createdat desc, id desc`,
    [uuidArray(visionIds)],
  );
  return new Map(rows.map((r) => [r.visionid as string, VisionSummary.fromRow(r)]));
}

// Bounds are compared in SQL, by id: a JS Date drops PostgreSQL's microseconds, and a bound
// rounded down would let the covered message itself back into the window.
const AFTER_SUMMARY = '(createdat, id) > (select coveredthroughat, coveredthroughid from vision_summaries where id = ?)';

const SUMMARY_COLUMNS = ['id', 'visionid', 'content', 'tokens', 'coveredmessages', 'coveredthroughid', 'coveredthroughat', 'model', 'createdat'];

/** What the model is sent from the stored path: the summary in use and the newest eligible messages after it, newest first. */
export interface SummaryAndWindow {
  summary: VisionSummary | null;
  candidates: VisionMessage[];
}

/**
 * The read of {@link findSummaryAndWindow} as two CTEs, for it and for a statement that reads them
 * beside its own work (the dialog's turn): `s`, the summary in use (by its index), and `w`, the
 * newest eligible messages after its coverage, newest first, at most `limit` (one indexed range
 * scan after (coveredthroughat, coveredthroughid), however long the dialog). `visionId` is an SQL
 * expression: a parameter, or a subquery of an earlier CTE.
 */
export function summaryAndWindowCtes(visionId: string, limit: number): string {
  return `s as (select ${SUMMARY_COLUMNS.join(', ')} from vision_summaries where visionid = ${visionId} order by createdat desc, id desc limit 1),
     w as (
       select ${MESSAGE_COLUMNS} from vision_messages where visionid = ${visionId} and ${ELIGIBLE}
         and (createdat, id) > (coalesce((select coveredthroughat from s), '-infinity'), coalesce((select coveredthroughid from s), '00000000-0000-0000-0000-000000000000'))
       order by createdat desc, id desc ${limitSql(limit)}
     )`;
}

/**
 * The summary's columns as `s_` columns of a row that joins `s` (see {@link summaryAndWindowCtes}):
 * `row`, on every row; `firstRow`, on the first row of the result only (its text is decoded once,
 * not per message); `none`, nulls (a branch of a union that carries no summary).
 */
export function summaryColumns(on: 'row' | 'firstRow' | 'none'): string {
  const value = (c: string) => (on === 'row' ? `s.${c}` : on === 'firstRow' ? `case when row_number() over () = 1 then s.${c} end` : 'null');
  return SUMMARY_COLUMNS.map((c) => `${value(c)} as s_${c}`).join(', ');
}

/** The summary carried by a row's `s_` columns (see {@link summaryColumns}), or null. */
export function summaryOfRow(row: Record<string, unknown>): VisionSummary | null {
  return row.s_id == null ? null : VisionSummary.fromRow(Object.fromEntries(SUMMARY_COLUMNS.map((c) => [c, row[`s_${c}`]])));
}

/**
 * The summary in use (null when none) and the newest eligible messages after its coverage (all
 * when there is none), newest first, at most `limit`, in one statement (see
 * {@link summaryAndWindowCtes}). Both come from one snapshot, so a summary step stored meanwhile
 * cannot leave a gap or an overlap between the summary and the window.
 */
export async function findSummaryAndWindow(on: SqlOn, visionId: string, limit: number): Promise<SummaryAndWindow> {
  const rows = await queryRows(
    on,
    `with ${summaryAndWindowCtes('?::uuid', limit)}
     select ${summaryColumns('firstRow')}, w.* from (select 1) one left join s on true left join w on true`,
    [visionId, visionId],
  );
  const candidates: VisionMessage[] = [];
  for (const r of rows) if (r.id != null) candidates.push(VisionMessage.fromRow(r));
  return { summary: summaryOfRow(rows[0]!), candidates };
}

/**
 * Eligible messages after the summary's coverage and before `before` (the oldest message of the
 * window), oldest first, at most `limit`: what the next summary step covers.
 */
export async function findMessagesToSummarize(
  on: SqlOn,
  visionId: string,
  after: VisionSummary | null,
  before: VisionMessage,
  limit: number,
): Promise<VisionMessage[]> {
  const params: unknown[] = [visionId, before.id];
  if (after) params.push(after.id);
  const rows = await queryRows(
    on,
    `select ${MESSAGE_COLUMNS} from vision_messages where visionid = ? and ${ELIGIBLE}
       and (createdat, id) < (select createdat, id from vision_messages where id = ?) ${after ? `and ${AFTER_SUMMARY}` : ''}
     order by createdat, id ${limitSql(limit)}`,
    params,
  );
  return rows.map((r) => VisionMessage.fromRow(r));
}

/** Stores the token counts of messages stored before counts existed. */
export async function storeMessageTokens(on: SqlOn, counts: { id: string; tokens: number }[]): Promise<void> {
  if (!counts.length) return;
  await queryRows(
    on,
    `update vision_messages m set tokens = c.tokens from unnest(?::uuid[], ?::int[]) as c(id, tokens) where m.id = c.id and m.tokens is null`,
    [uuidArray(counts.map((c) => c.id)), `{${counts.map((c) => c.tokens).join(',')}}`],
  );
}

/**
 * Stores the next summary step, unless another instance stored one since `base` was read (then
 * nothing is written and false is returned).
 */
export async function insertSummary(
  on: SqlOn,
  s: { visionId: string; base: VisionSummary | null; content: string; tokens: number; coveredMessages: number; through: VisionMessage; model: string },
): Promise<boolean> {
  const rows = await queryRows(
    on,
    `insert into vision_summaries (id, visionid, content, tokens, coveredmessages, coveredthroughid, coveredthroughat, model, createdat)
     select ?, ?, ?, ?, ?, ?, (select createdat from vision_messages where id = ?), ?, clock_timestamp()
     where coalesce((select id from vision_summaries where visionid = ? order by createdat desc, id desc limit 1)::text, '') = ?
     on conflict do nothing returning id`,
    [
      uuidv7(),
      s.visionId,
      s.content,
      s.tokens,
      s.coveredMessages,
      s.through.id,
      s.through.id,
      s.model,
      s.visionId,
      s.base?.id ?? '',
    ],
  );
  return rows.length > 0;
}

/** Status and title of a vision (jobs run without a user's request). */
export async function findVisionState(on: SqlOn, visionId: string): Promise<{ status: string; title: string; userid: string } | null> {
  const [row] = await queryRows<{ status: string; title: string; userid: string }>(on, `select status, title, userid from visions where id = ?`, [visionId]);
  return row ?? null;
}
