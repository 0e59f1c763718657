import { queryRows, uuidArray, type SqlRunner } from '../db/sql';
import type { PageRequest } from '../graphql/relay';
import { VisionMessage, messageColumns } from './message.entity';

export interface MessagePageKey {
  visionId: string;
  req: PageRequest;
}

type Row = Record<string, unknown> & { _vid: string };

/**
 * One page of messages for each key, with as few statements as possible: keys that share the
 * same page request (the usual case in a list) are answered by one LATERAL query over the
 * `(visionid, createdat, id)` index; each returns `take + 1` rows (the extra one says whether
 * there is more). Results come back in key order; rows are in query order (newest first when
 * backward).
 */
export async function findMessagePages(em: SqlRunner, keys: readonly MessagePageKey[]): Promise<VisionMessage[][]> {
  const groups = new Map<string, number[]>();
  keys.forEach((k, i) => {
    const g = JSON.stringify([k.req.direction, k.req.take, k.req.afterId ?? null, k.req.beforeId ?? null]);
    const list = groups.get(g);
    if (list) list.push(i);
    else groups.set(g, [i]);
  });
  const out: VisionMessage[][] = keys.map(() => []);
  await Promise.all(
    [...groups.values()].map(async (idx) => {
      const req = keys[idx[0]!]!.req;
      const visionIds = [...new Set(idx.map((i) => keys[i]!.visionId))];
      const byVision = await queryGroup(em, visionIds, req);
      for (const i of idx) out[i] = byVision.get(keys[i]!.visionId) ?? [];
    }),
  );
  return out;
}

/**
 * SQL for one page of the messages of the vision `visionSql` (an SQL expression: a column or a
 * `?`), `take + 1` rows, newest first when backward. Its parameters are appended to `params` in
 * the order of their `?`s, so the caller appends its own before and after.
 */
export function messagePageSql(visionSql: string, req: PageRequest, params: unknown[]): string {
  const conds: string[] = [`m.visionid = ${visionSql}`];
  if (req.afterId) {
    conds.push(`(m.createdat, m.id) > (select c.createdat, c.id from vision_messages c where c.id = ? and c.visionid = ${visionSql})`);
    params.push(req.afterId);
  }
  if (req.beforeId) {
    conds.push(`(m.createdat, m.id) < (select c.createdat, c.id from vision_messages c where c.id = ? and c.visionid = ${visionSql})`);
    params.push(req.beforeId);
  }
  const dir = req.direction === 'forward' ? 'asc' : 'desc';
  params.push(req.take + 1);
  return `select ${messageColumns('m')} from vision_messages m where ${conds.join(' and ')} order by m.createdat ${dir}, m.id ${dir} limit ?`;
}

/** What each field of the GraphQL `VisionMessage` type reads from a message row. */
const FIELD_COLUMNS: Record<string, readonly string[]> = {
  id: ['id'],
  visionId: ['visionid'],
  sender: ['sender'],
  type: ['messagetype'],
  content: ['content'],
  state: ['state'],
  payload: ['payload'],
  createdAt: ['createdms'],
  file: ['payload', 'visionid'],
  __typename: [],
};
const ALL_COLUMNS = ['id', 'visionid', 'sender', 'messagetype', 'content', 'state', 'payload', 'createdms'];

/**
 * The JSON columns a set of selected `VisionMessage` fields needs (always the id), or all of
 * them when a field is not known here. Like PostGraphile, a page then carries only what the
 * client asked for: less for PostgreSQL to encode and for Node to parse.
 */
export function messageColumnsFor(fields: Iterable<string>): string[] {
  const columns = new Set(['id']);
  for (const f of fields) {
    const cols = FIELD_COLUMNS[f];
    if (!cols) return ALL_COLUMNS;
    for (const c of cols) columns.add(c);
  }
  return ALL_COLUMNS.filter((c) => columns.has(c));
}

/**
 * Whole milliseconds since the epoch, in float8 arithmetic (numeric, which `extract` returns, costs
 * PostgreSQL several times more per row). Timestamps have microseconds, so the exact value is
 * k/1000 of a millisecond above a whole one; float8 is off by less than 0.0003 ms at today's
 * epoch, and the 0.0005 added before `floor` keeps that error from crossing a whole millisecond.
 */
const epochMs = (t: string) => `floor(date_part('epoch', ${t}) * 1000 + 0.0005)::int8`;

/**
 * A message as JSON with the given columns of those its GraphQL type shows (not the idempotency
 * key, reply link or heartbeat), `createdat` as whole milliseconds since the epoch (`createdms`):
 * a JSON number that becomes a Date without parsing text.
 */
const messageJson = (m: string, columns: readonly string[] = ALL_COLUMNS) =>
  `json_build_object(${columns
    .map((c) => (c === 'createdms' ? `'createdms', ${epochMs(`${m}.createdat`)}` : `'${c}', ${m}.${c}`))
    .join(', ')})`;

/**
 * The same page as one JSON array in page order, for folding a page into the statement that
 * reads its vision: one round trip, and one `JSON.parse` instead of a type parser per column.
 * `columns` (from {@link messageColumnsFor}) limits what each message carries.
 */
export function messagePageJsonSql(visionSql: string, req: PageRequest, params: unknown[], columns?: readonly string[]): string {
  const dir = req.direction === 'forward' ? 'asc' : 'desc';
  const page = messagePageSql(visionSql, req, params);
  return `(select coalesce(json_agg(${messageJson('p', columns)} order by p.createdat ${dir}, p.id ${dir}), '[]'::json) from (${page}) p)`;
}

/** The newest message of the vision `visionSql` as JSON (null when there is none). */
export function lastMessageJsonSql(visionSql: string): string {
  return `(select ${messageJson('p')} from vision_messages p where p.visionid = ${visionSql} order by p.createdat desc, p.id desc limit 1)`;
}

async function queryGroup(em: SqlRunner, visionIds: string[], req: PageRequest): Promise<Map<string, VisionMessage[]>> {
  const result = new Map<string, VisionMessage[]>();
  if (req.take === 0 && visionIds.length === 0) return result;
  const params: unknown[] = [uuidArray(visionIds)];
  const sql = `select m.*, v.id as _vid
    from unnest(?::uuid[]) as v(id)
    cross join lateral (${messagePageSql('v.id', req, params)}) m`;
  const rows = await queryRows<Row>(em, sql, params);
  for (const row of rows) {
    const vid = row._vid;
    delete (row as Record<string, unknown>)._vid;
    const msg = VisionMessage.fromRow(row);
    const list = result.get(vid);
    if (list) list.push(msg);
    else result.set(vid, [msg]);
  }
  return result;
}

/** The newest message of each vision (null when it has none), one statement for all ids. */
export async function findLastMessages(em: SqlRunner, visionIds: readonly string[]): Promise<(VisionMessage | null)[]> {
  const rows = await queryRows<{ vid: string; last: Record<string, unknown> | null }>(
    em,
    `select v.id as vid, ${lastMessageJsonSql('v.id')} as last from unnest(?::uuid[]) as v(id)`,
    [uuidArray(visionIds)],
  );
  const map = new Map(rows.map((r) => [r.vid, r.last ? VisionMessage.fromRow(r.last) : null]));
  return visionIds.map((id) => map.get(id) ?? null);
}

/** Number of messages per vision, one statement for all ids. */
export async function countMessages(em: SqlRunner, visionIds: readonly string[]): Promise<number[]> {
  const rows = await queryRows<{ visionid: string; n: number }>(
    em,
    'select visionid, count(*)::int as n from vision_messages where visionid = any(?::uuid[]) group by visionid',
    [uuidArray(visionIds)],
  );
  const map = new Map(rows.map((r) => [r.visionid, r.n]));
  return visionIds.map((id) => map.get(id) ?? 0);
}

/** True when the message exists in the vision (used to tell an unknown cursor from an empty page). */
export async function messageExistsInVision(em: SqlRunner, visionId: string, id: string): Promise<boolean> {
  const rows = await queryRows<unknown>(em, 'select 1 from vision_messages where id = ? and visionid = ?', [id, visionId]);
  return rows.length > 0;
}
