import type { SqlRunner } from '../db/sql';
import { Arg, Authorized, Ctx, Query, Resolver } from 'type-graphql';
import { BadUserInputError } from '../graphql/errors';
import { TokenUsage } from './token-usage.type';
import { sumUsageForClient } from './tokenscount.service';

/** What this module needs from the request context (kept local: tokenscount knows no visions). */
interface TokensContext {
  user: { userId: string } | null;
  /** Where raw statements run (see GraphQLContext.sql). */
  sql: SqlRunner;
}

@Resolver()
export class TokensCountResolver {
  @Authorized()
  @Query(() => TokenUsage, { description: "The caller's token usage over all modules, optionally within [since, until)." })
  tokenUsage(
    @Ctx() ctx: TokensContext,
    @Arg('since', () => Date, { nullable: true }) since?: Date | null,
    @Arg('until', () => Date, { nullable: true }) until?: Date | null,
  ): Promise<TokenUsage> {
    if (since && until && since > until) throw new BadUserInputError('since must not be after until', 'since');
    return sumUsageForClient(ctx.sql, { clientId: ctx.user!.userId, clientType: 'user', since, until });
  }
}
