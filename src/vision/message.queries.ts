import type { EntityManager } from '@mikro-orm/postgresql';
import { uuidArray } from '../db/sql';
import type { PageRequest } from '../graphql/relay';
import { VisionMessage } from './message.entity';

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
export async function findMessagePages(em: EntityManager, keys: readonly MessagePageKey[]): Promise<VisionMessage[][]> {
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

async function queryGroup(em: EntityManager, visionIds: string[], req: PageRequest): Promise<Map<string, VisionMessage[]>> {
  const result = new Map<string, VisionMessage[]>();
  if (req.take === 0 && visionIds.length === 0) return result;
  const params: unknown[] = [uuidArray(visionIds)];
  const conds: string[] = ['m.visionid = v.id'];
  if (req.afterId) {
    conds.push('(m.createdat, m.id) > (select c.createdat, c.id from vision_messages c where c.id = ? and c.visionid = v.id)');
    params.push(req.afterId);
  }
  if (req.beforeId) {
    conds.push('(m.createdat, m.id) < (select c.createdat, c.id from vision_messages c where c.id = ? and c.visionid = v.id)');
    params.push(req.beforeId);
  }
  const dir = req.direction === 'forward' ? 'asc' : 'desc';
  params.push(req.take + 1);
  const sql = `select m.*, v.id as _vid
    from unnest(?::uuid[]) as v(id)
    cross join lateral (
      select m.* from vision_messages m
      where ${conds.join(' and ')}
      order by m.createdat ${dir}, m.id ${dir}
      limit ?
    ) m`;
  const rows = await em.getConnection().execute<Row[]>(sql, params, 'all', em.getTransactionContext());
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

/** Number of messages per vision, one statement for all ids. */
export async function countMessages(em: EntityManager, visionIds: readonly string[]): Promise<number[]> {
  const rows = await em
    .getConnection()
    .execute<{ visionid: string; n: number }[]>(
      'select visionid, count(*)::int as n from vision_messages where visionid = any(?::uuid[]) group by visionid',
      [uuidArray(visionIds)],
      'all',
      em.getTransactionContext(),
    );
  const map = new Map(rows.map((r) => [r.visionid, r.n]));
  return visionIds.map((id) => map.get(id) ?? 0);
}

/** True when the message exists in the vision (used to tell an unknown cursor from an empty page). */
export async function messageExistsInVision(em: EntityManager, visionId: string, id: string): Promise<boolean> {
  const rows = await em
    .getConnection()
    .execute<unknown[]>(
      'select 1 from vision_messages where id = ? and visionid = ?',
      [id, visionId],
      'all',
      em.getTransactionContext(),
    );
  return rows.length > 0;
}
