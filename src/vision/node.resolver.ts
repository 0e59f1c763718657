import type { GraphQLContext } from '../graphql/context';
import { BadUserInputError } from '../graphql/errors';
import { Node } from '../graphql/node';
import { parseId } from '../graphql/relay';
import { queryRows, uuidArray, type SqlRunner } from '../db/sql';
import { Arg, Authorized, Ctx, ID, Query, Resolver } from 'type-graphql';
import { messageColumns, VisionMessage } from './message.entity';
import { Vision } from './vision.entity';

/**
 * The caller's visions and messages among `ids`, in the order asked, null for an id that names
 * nothing of theirs (another user's object looks absent, as everywhere). Two indexed lookups,
 * run together, whatever the number of ids.
 */
export async function findNodesForUser(sql: SqlRunner, userId: string, ids: readonly string[]): Promise<(Vision | VisionMessage | null)[]> {
  const unique = uuidArray([...new Set(ids)]);
  const [visionRows, messageRows] = await Promise.all([
    queryRows(sql, 'select v.* from visions v where v.id = any(?::uuid[]) and v.userid = ?', [unique, userId]),
    queryRows(
      sql,
      `select ${messageColumns('m')} from vision_messages m join visions v on v.id = m.visionid where m.id = any(?::uuid[]) and v.userid = ?`,
      [unique, userId],
    ),
  ]);
  const found = new Map<string, Vision | VisionMessage>();
  for (const row of visionRows) found.set(String(row.id), Vision.fromRow(row));
  for (const row of messageRows) found.set(String(row.id), VisionMessage.fromRow(row));
  return ids.map((id) => found.get(id) ?? null);
}

@Resolver()
export class NodeResolver {
  @Authorized()
  @Query(() => Node, { nullable: true, description: "A Vision or VisionMessage by id, in any status; null when absent or not the caller's." })
  async node(@Arg('id', () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<Node | null> {
    const [found] = await findNodesForUser(ctx.sql, ctx.user!.userId, [parseId(id)]);
    return found;
  }

  @Authorized()
  @Query(() => [Node], {
    nullable: 'items',
    description: "Several objects by id, in the order given (at most MAX_PAGE_SIZE ids); null for each id that names nothing of the caller's.",
  })
  async nodes(@Arg('ids', () => [ID]) ids: string[], @Ctx() ctx: GraphQLContext): Promise<(Node | null)[]> {
    if (ids.length > ctx.config.maxPageSize) throw new BadUserInputError(`ids: at most ${ctx.config.maxPageSize} per request`, 'ids');
    if (ids.length === 0) return [];
    return findNodesForUser(ctx.sql, ctx.user!.userId, ids.map((id) => parseId(id, 'ids')));
  }
}
