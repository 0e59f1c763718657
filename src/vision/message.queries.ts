import { limitSql, queryRows, uuidArray, type SqlRunner } from '../db/sql';
import type { PageRequest } from '../graphql/relay';
import { PREFIXED_MESSAGE_ROW, VisionMessage, messageColumns } from './message.entity';

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
  return pageSql(messageColumns('m'), visionSql, req, params);
}

/** The page statement with the given select list (`m` is the message). */
function pageSql(selectList: string, visionSql: string, req: PageRequest, params: unknown[]): string {
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
  return `select ${selectList} from vision_messages m where ${conds.join(' and ')} order by m.createdat ${dir}, m.id ${dir} ${limitSql(req.take + 1)}`;
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

/** The select list of a message as `m_` columns (`createdat` as `m_createdms`, a float8). */
const prefixedColumns = (columns: readonly string[]) =>
  columns.map((c) => (c === 'createdms' ? `${epochMs('m.createdat')}::float8 as m_createdms` : `m.${c} as m_${c}`)).join(', ');

/**
 * The same page as rows of the given columns (from {@link messageColumnsFor}), each prefixed
 * `m_`, for joining a page to the statement that reads its vision (`left join lateral (…) m on
 * true`): one round trip, and no JSON. PostgreSQL escaping message text into JSON cost it about
 * twice the statement, and Node then decoded the JSON text and parsed it (BENCHMARKS.md, issue
 * 16); plain text columns are sent as they are stored. `createdms` is the instant as a float8.
 */
export function messagePageRowsSql(visionSql: string, req: PageRequest, params: unknown[], columns: readonly string[] = ALL_COLUMNS): string {
  return pageSql(prefixedColumns(columns), visionSql, req, params);
}

/** A message from a row of {@link messagePageRowsSql} (`m_` columns; null when the page is empty). */
export function messageFromPrefixedRow(row: Record<string, unknown>): VisionMessage | null {
  return row.m_id === null || row.m_id === undefined ? null : VisionMessage.fromRow(row, PREFIXED_MESSAGE_ROW);
}

/** The newest message of the vision `visionSql` as `m_` columns, for `left join lateral (…) m on true`. */
export function lastMessageRowSql(visionSql: string): string {
  return `select ${prefixedColumns(ALL_COLUMNS)} from vision_messages m where m.visionid = ${visionSql} order by m.createdat desc, m.id desc limit 1`;
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
  const rows = await queryRows<Record<string, unknown> & { vid: string }>(
    em,
    `select v.id as vid, m.* from unnest(?::uuid[]) as v(id) left join lateral (${lastMessageRowSql('v.id')}) m on true`,
    [uuidArray(visionIds)],
  );
  const map = new Map(rows.map((r) => [r.vid, messageFromPrefixedRow(r)]));
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
