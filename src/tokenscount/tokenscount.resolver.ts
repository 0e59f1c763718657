import type { SqlRunner } from '../db/sql';
import { Arg, Authorized, Ctx, Query, Resolver } from 'type-graphql';
import { BadUserInputError } from '../graphql/errors';
import { TokenUsage } from './token-usage.type';
import { sumUsageForClient } from './tokenscount.service';
import { breakdownUsage, TokenUsageBucket, UsageGroup } from './usage-breakdown';
import { Budget } from './budget.type';
import type { TokenBudgets } from './budgets';

/** What this module needs from the request context (kept local: tokenscount knows no visions). */
interface TokensContext {
  user: { userId: string } | null;
  /** Where raw statements run (see GraphQLContext.sql). */
  sql: SqlRunner;
  budgets: TokenBudgets;
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

  @Authorized()
  @Query(() => [Budget], { description: "v2. The caller's budgets; empty when none is configured." })
  async budgets(@Ctx() ctx: TokensContext): Promise<Budget[]> {
    return (await ctx.budgets.states(ctx.sql, { clientId: ctx.user!.userId, clientType: 'user' })).map(Budget.from);
  }

  @Authorized()
  @Query(() => [TokenUsageBucket], { description: "v2. The caller's usage within [since, until), grouped; buckets ordered by their keys." })
  tokenUsageBreakdown(
    @Ctx() ctx: TokensContext,
    @Arg('groupBy', () => [UsageGroup]) groupBy: UsageGroup[],
    @Arg('since', () => Date, { nullable: true }) since?: Date | null,
    @Arg('until', () => Date, { nullable: true }) until?: Date | null,
  ): Promise<TokenUsageBucket[]> {
    if (since && until && since > until) throw new BadUserInputError('since must not be after until', 'since');
    return breakdownUsage(ctx.sql, { clientId: ctx.user!.userId, clientType: 'user', groupBy, since, until });
  }
}
