import DataLoader from 'dataloader';
import { Ctx, FieldResolver, Resolver, Root } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context';
import { Vision } from '../vision/vision.entity';
import { findLatestSummaries } from './memory.queries';
import { ModelContext } from './memory.types';
import { VisionSummary } from './summary.entity';

const summaryLoaders = new WeakMap<GraphQLContext, DataLoader<string, VisionSummary | null>>();

function summaryLoader(ctx: GraphQLContext): DataLoader<string, VisionSummary | null> {
  let loader = summaryLoaders.get(ctx);
  if (!loader) {
    loader = new DataLoader(async (ids) => {
      const found = await findLatestSummaries(ctx.sql, ids);
      return ids.map((id) => found.get(id) ?? null);
    });
    summaryLoaders.set(ctx, loader);
  }
  return loader;
}

/** v2 fields of Vision from the memory module; the Vision itself was read for its owner. */
@Resolver(() => Vision)
export class MemoryResolver {
  @FieldResolver(() => VisionSummary, { nullable: true, description: 'v2. Null until the dialog is longer than the window.' })
  summary(@Root() vision: Vision, @Ctx() ctx: GraphQLContext): Promise<VisionSummary | null> {
    return summaryLoader(ctx).load(vision.id);
  }

  @FieldResolver(() => ModelContext, { description: 'v2. What the model would be sent if the person wrote now; the model is not called.' })
  async context(@Root() vision: Vision, @Ctx() ctx: GraphQLContext): Promise<ModelContext> {
    const plan = await ctx.memory.plan({ id: vision.id, title: vision.title }, ctx.sql);
    return Object.assign(new ModelContext(), {
      budgetTokens: plan.budgetTokens,
      totalTokens: plan.totalTokens,
      summary: plan.summary,
      recalled: plan.recalled,
      window: plan.window,
    });
  }
}
