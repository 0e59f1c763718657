import { v7 as uuidv7 } from 'uuid';
import { inTransaction, limitSql, queryRows, type SqlRunner } from '../db/sql';
import { BadUserInputError, NotFoundError } from '../graphql/errors';
import { type PageRequest } from '../graphql/relay';
import { usageByMetaSql, usageFromRow } from '../tokenscount/tokenscount.service';
import type { TokenUsage } from '../tokenscount/token-usage.type';
import { VisionMessage } from './message.entity';
import { lastMessageRowSql, messageFromPrefixedRow, messagePageRowsSql } from './message.queries';
import { Vision } from './vision.entity';
import { VisionStatus } from './vision.enums';

export interface VisionRules {
  /** @default 200 */
  maxTitleChars: number;
  /** @default 16384 */
  maxMetaBytes: number;
  /** IANA zone of the date in the default title. */
  titleTimeZone: string;
}

/** "Визия от 24.11.2026" for the given instant in the given time zone (seed §3.1). */
export function defaultTitle(at: Date, timeZone: string): string {
  const parts = new Intl.DateTimeFormat('ru-RU', { timeZone, day: '2-digit', month: '2-digit', year: 'numeric' }).formatToParts(at);
  const get = (t: string) => parts.find((p) => p.type === t)?.value ?? '';
  return `Визия от ${get('day')}.${get('month')}.${get('year')}`;
}

/**
 * True when the string is valid Unicode: a lone surrogate cannot be stored (PostgreSQL rejects
 * it in jsonb and text) and would otherwise surface as an internal error.
 */
export function wellFormed(s: string): boolean {
  return (s as string & { isWellFormed(): boolean }).isWellFormed();
}

/** Every string in a JSON value (keys included) is valid Unicode. */
function jsonWellFormed(v: unknown, depth = 0): boolean {
  if (typeof v === 'string') return wellFormed(v);
  if (v === null || typeof v !== 'object' || depth > 100) return true;
  for (const [k, x] of Object.entries(v)) if (!wellFormed(k) || !jsonWellFormed(x, depth + 1)) return false;
  return true;
}

/** Trimmed title of 1..max characters (code points), without control characters. */
export function validateTitle(raw: string, max: number): string {
  const title = raw.trim();
  const len = [...title].length;
  if (len === 0) throw new BadUserInputError('title must not be empty', 'title');
  if (len > max) throw new BadUserInputError(`title must be at most ${max} characters`, 'title');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(title)) throw new BadUserInputError('title must not contain control characters', 'title');
  if (!wellFormed(title)) throw new BadUserInputError('title must be valid Unicode (no lone surrogates)', 'title');
  return title;
}

/** A JSON object of at most `maxBytes` serialized; PostgreSQL jsonb cannot hold \u0000. */
export function validateMeta(meta: unknown, maxBytes: number): Record<string, unknown> | null {
  if (meta === undefined || meta === null) return null;
  if (typeof meta !== 'object' || Array.isArray(meta)) throw new BadUserInputError('meta must be a JSON object', 'meta');
  const json = JSON.stringify(meta);
  if (Buffer.byteLength(json, 'utf8') > maxBytes) throw new BadUserInputError(`meta must be at most ${maxBytes} bytes as JSON`, 'meta');
  if (json.includes('\\u0000')) throw new BadUserInputError('meta must not contain NUL characters', 'meta');
  if (!jsonWellFormed(meta)) throw new BadUserInputError('meta must be valid Unicode (no lone surrogates)', 'meta');
  return meta as Record<string, unknown>;
}

const exec = (em: SqlRunner, sql: string, params: unknown[]) => queryRows(em, sql, params);

/**
 * The caller's vision in any status, or null when it is absent or someone else's. Every
 * function here runs raw statements and returns read objects: no unit of work is involved.
 */
export async function findVisionForUser(em: SqlRunner, opts: { id: string; userId: string }): Promise<Vision | null> {
  const [row] = await exec(em, 'select v.* from visions v where v.id = ? and v.userid = ?', [opts.id, opts.userId]);
  return row ? Vision.fromRow(row) : null;
}

/**
 * The vision's columns on the first row of a page only (null on the others): each text column is
 * decoded and each timestamp parsed per row, about a tenth of a short page's cost when repeated
 * on all 51 rows (BENCHMARKS.md, issue 16). PostgreSQL computes the window function once.
 */
const FIRST_ROW_VISION = ['id', 'userid', 'title', 'status', 'createdat', 'updatedat', 'meta']
  .map((c) => `case when row_number() over () = 1 then v.${c} end as ${c}`)
  .join(', ');

/**
 * {@link findVisionForUser} and one page of its messages (`take + 1` rows, in query order as
 * {@link findMessagePages} returns them) in one statement; `columns` limits what the messages
 * carry (see `messageColumnsFor`).
 */
export async function findVisionWithMessagePage(
  em: SqlRunner,
  opts: { id: string; userId: string; req: PageRequest; columns?: readonly string[] },
): Promise<{ vision: Vision; messages: VisionMessage[] } | null> {
  const params: unknown[] = [];
  const page = messagePageRowsSql('v.id', opts.req, params, opts.columns);
  params.push(opts.id, opts.userId);
  const rows = await exec(em, `select ${FIRST_ROW_VISION}, m.* from visions v left join lateral (${page}) m on true where v.id = ? and v.userid = ?`, params);
  if (rows.length === 0) return null;
  const messages: VisionMessage[] = [];
  for (const row of rows) {
    const m = messageFromPrefixedRow(row);
    if (m) messages.push(m);
  }
  return { vision: Vision.fromRow(rows[0]!), messages };
}

/** Like {@link findVisionForUser}, but NOT_FOUND when there is none: another user's vision looks absent. */
export async function getVisionForUser(em: SqlRunner, opts: { id: string; userId: string }): Promise<Vision> {
  const vision = await findVisionForUser(em, opts);
  if (!vision) throw new NotFoundError();
  return vision;
}

export async function createVision(
  em: SqlRunner,
  rules: VisionRules,
  opts: { userId: string; title?: string | null; meta?: unknown },
): Promise<Vision> {
  const now = new Date();
  const title = opts.title == null ? defaultTitle(now, rules.titleTimeZone) : validateTitle(opts.title, rules.maxTitleChars);
  const meta = validateMeta(opts.meta, rules.maxMetaBytes);
  const [row] = await exec(
    em,
    `insert into visions (id, userid, title, status, meta, createdat, updatedat) values (?, ?, ?, ?, ?::jsonb, now(), now()) returning *`,
    [uuidv7(), opts.userId, title, VisionStatus.ACTIVE, meta && JSON.stringify(meta)],
  );
  return Vision.fromRow(row!);
}

/** A new title; updatedAt moves only when the title changes. */
export async function renameVision(
  em: SqlRunner,
  rules: VisionRules,
  opts: { id: string; userId: string; title: string },
): Promise<Vision> {
  const title = validateTitle(opts.title, rules.maxTitleChars);
  const [row] = await exec(
    em,
    `update visions set title = ?, updatedat = case when title = ? then updatedat else greatest(now(), updatedat) end
     where id = ? and userid = ? returning *`,
    [title, title, opts.id, opts.userId],
  );
  if (!row) throw new NotFoundError();
  return Vision.fromRow(row);
}

/**
 * Any status from any status (contract). DELETED is a soft delete: the row and its dialog stay;
 * ACTIVE restores. Leaving ACTIVE first stops a reply in progress (`stopReply`, which stores
 * the partial text STOPPED); the status then changes in a transaction that holds the vision row
 * and stops any reply that slipped in meanwhile, so no message is ever added afterwards.
 */
export async function setVisionStatus(
  em: SqlRunner,
  opts: { id: string; userId: string; status: VisionStatus },
  hooks: { stopReply?: (visionId: string) => Promise<unknown> } = {},
): Promise<Vision> {
  if (!Object.values(VisionStatus).includes(opts.status)) throw new BadUserInputError('unknown status', 'status');
  const vision = await getVisionForUser(em, opts);
  if (vision.status === opts.status) return vision;
  const leaving = opts.status !== VisionStatus.ACTIVE;
  if (leaving) await hooks.stopReply?.(vision.id);
  const row = await inTransaction(em, async (tx) => {
    await queryRows(tx, 'select id from visions where id = ? for update', [vision.id]);
    if (leaving) {
      await queryRows(
        tx,
        `update vision_messages set state = 'stopped', heartbeatat = null, payload = coalesce(payload, '{}'::jsonb) || '{"stop":"status"}'::jsonb
         where visionid = ? and state = 'streaming'`,
        [vision.id],
      );
    }
    const [updated] = await queryRows(tx, 'update visions set status = ?, updatedat = greatest(now(), updatedat) where id = ? returning *', [
      opts.status,
      vision.id,
    ]);
    return updated!;
  });
  return Vision.fromRow(row);
}

export const DEFAULT_LIST_STATUSES = [VisionStatus.ACTIVE, VisionStatus.FROZEN];

/** A vision of a list, with what the list asked to be read in the same statement. */
export interface ListedVision {
  id: string;
  vision: Vision;
  /** Present when asked for: the newest message, null when there is none. */
  lastMessage?: VisionMessage | null;
  /** Present when asked for. */
  tokenUsage?: TokenUsage;
}

/**
 * A page of the caller's visions, most recently updated first (`updatedat desc, id desc`), with
 * `take + 1` rows, in one statement; `include` adds each vision's newest message and token
 * usage to it (lateral subqueries over the same indexes the loaders use). Unknown `after`
 * cursors are BAD_USER_INPUT.
 */
export async function listVisionsForUser(
  em: SqlRunner,
  opts: { userId: string; statuses: VisionStatus[]; req: PageRequest; include?: { lastMessage?: boolean; tokenUsage?: boolean } },
): Promise<ListedVision[]> {
  const { req } = opts;
  const withLast = opts.include?.lastMessage ?? false;
  const withUsage = opts.include?.tokenUsage ?? false;
  const params: unknown[] = [opts.userId, `{${opts.statuses.join(',')}}`];
  let cursorCond = '';
  if (req.afterId) {
    cursorCond = ' and (v.updatedat, v.id) < (select c.updatedat, c.id from visions c where c.id = ? and c.userid = v.userid)';
    params.push(req.afterId);
  }
  const page = `select v.* from visions v where v.userid = ? and v.status = any(?::text[])${cursorCond}
     order by v.updatedat desc, v.id desc ${limitSql(req.take + 1)}`;
  const sql =
    withLast || withUsage
      ? `select v.*${withLast ? ', m.*' : ''}${withUsage ? ', u.*' : ''}
         from (${page}) v${withLast ? ` left join lateral (${lastMessageRowSql('v.id')}) m on true` : ''}${
           withUsage ? ` left join lateral (${usageByMetaSql('visionid', 'v.id::text')}) u on true` : ''
         }
         order by v.updatedat desc, v.id desc`
      : page;
  const rows = await exec(em, sql, params);
  if (rows.length === 0 && req.afterId) {
    const [exists] = await exec(em, 'select 1 from visions where id = ? and userid = ?', [req.afterId, opts.userId]);
    if (!exists) throw new BadUserInputError('after does not point at one of your visions', 'after');
  }
  return rows.map((r) => {
    const vision = Vision.fromRow(r);
    const listed: ListedVision = { id: vision.id, vision };
    if (withLast) listed.lastMessage = messageFromPrefixedRow(r);
    if (withUsage) listed.tokenUsage = usageFromRow(r);
    return listed;
  });
}

export async function countVisionsForUser(em: SqlRunner, opts: { userId: string; statuses: VisionStatus[] }): Promise<number> {
  const [row] = await exec(em, 'select count(*)::int as n from visions where userid = ? and status = any(?::text[])', [
    opts.userId,
    `{${opts.statuses.join(',')}}`,
  ]);
  return row!.n as number;
}
