import { Arg, Authorized, Ctx, ID, Int, Query, Resolver } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context';
import { MessageSearchConnection, SearchMode } from './search.types';

@Resolver()
export class SearchResolver {
  @Authorized()
  @Query(() => MessageSearchConnection, {
    description:
      "v2. The caller's messages that match, best first; in one vision or in all their visions\n(DELETED visions excluded unless visionId names one).",
  })
  async searchMessages(
    @Arg('query', () => String) query: string,
    @Arg('visionId', () => ID, { nullable: true }) visionId: string | null,
    @Arg('mode', () => SearchMode, { nullable: true, defaultValue: SearchMode.HYBRID }) mode: SearchMode,
    @Arg('first', () => Int, { nullable: true }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() ctx: GraphQLContext,
  ): Promise<MessageSearchConnection> {
    const page = await ctx.search.search(ctx.user!.userId, { query, visionId, mode, first, after });
    if (page.warning) (ctx.warnings ??= []).push(page.warning);
    return {
      edges: page.hits.map((h) => ({ cursor: h.cursor, node: h.hit })),
      pageInfo: {
        hasNextPage: page.hasNextPage,
        hasPreviousPage: page.hasPreviousPage,
        startCursor: page.hits[0]?.cursor ?? null,
        endCursor: page.hits[page.hits.length - 1]?.cursor ?? null,
      },
    };
  }
}
