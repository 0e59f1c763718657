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

/** The summary in use (the newest), or null. */
export async function findLatestSummary(on: SqlOn, visionId: string): Promise<VisionSummary | null> {
  const [row] = await queryRows(on, `select * from vision_summaries where visionid = ? order by createdat desc, id desc limit 1`, [visionId]);
  return row ? VisionSummary.fromRow(row) : null;
}

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

/**
 * The newest eligible messages after the summary's coverage (all when there is none), newest
 * first, at most `limit`: one indexed range scan, however long the dialog.
 */
export async function findWindowCandidates(on: SqlOn, visionId: string, after: VisionSummary | null, limit: number): Promise<VisionMessage[]> {
  const params: unknown[] = [visionId];
  if (after) params.push(after.id);
  const rows = await queryRows(
    on,
    `select ${MESSAGE_COLUMNS} from vision_messages where visionid = ? and ${ELIGIBLE} ${after ? `and ${AFTER_SUMMARY}` : ''}
     order by createdat desc, id desc ${limitSql(limit)}`,
    params,
  );
  return rows.map((r) => VisionMessage.fromRow(r));
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
  params.push(limit);
  const rows = await queryRows(
    on,
    `select ${MESSAGE_COLUMNS} from vision_messages where visionid = ? and ${ELIGIBLE}
       and (createdat, id) < (select createdat, id from vision_messages where id = ?) ${after ? `and ${AFTER_SUMMARY}` : ''}
     order by createdat, id limit ?`,
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
