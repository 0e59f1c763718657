import { Arg, Args, ArgsType, Authorized, Ctx, Field, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context';
import { BadUserInputError } from '../graphql/errors';
import { parseId, toPage, toPageRequest } from '../graphql/relay';
import { TokenUsage } from '../tokenscount/token-usage.type';
import { VisionMessage } from './message.entity';
import { messageExistsInVision } from './message.queries';
import { LAST_MESSAGE_REQ } from './vision.loaders';
import { Vision } from './vision.entity';
import { VisionStatus } from './vision.enums';
import * as visions from './vision.service';
import { CreateVisionInput, VisionConnection, VisionMessageConnection } from './vision.types';

@ArgsType()
class VisionsArgs {
  @Field(() => [VisionStatus], { nullable: true })
  status?: VisionStatus[] | null;

  @Field(() => Int, { nullable: true })
  first?: number | null;

  @Field(() => String, { nullable: true })
  after?: string | null;
}

@ArgsType()
class MessagesArgs {
  @Field(() => Int, { nullable: true })
  first?: number | null;

  @Field(() => String, { nullable: true })
  after?: string | null;

  @Field(() => Int, { nullable: true })
  last?: number | null;

  @Field(() => String, { nullable: true })
  before?: string | null;
}

const rules = (ctx: GraphQLContext): visions.VisionRules => ctx.config;

@Resolver(() => Vision)
export class VisionResolver {
  @Authorized()
  @Query(() => VisionConnection, {
    description: "The caller's visions, most recently updated first. Default status filter: ACTIVE and FROZEN.",
  })
  async visions(@Args(() => VisionsArgs) args: VisionsArgs, @Ctx() ctx: GraphQLContext): Promise<VisionConnection> {
    const userId = ctx.user!.userId;
    const statuses = args.status?.length ? [...new Set(args.status)] : visions.DEFAULT_LIST_STATUSES;
    const req = toPageRequest(
      { first: args.first, after: args.after },
      { max: ctx.config.maxPageSize, defaultFirst: ctx.config.maxMessages },
    );
    const rows = await visions.listVisionsForUser(ctx.em, { userId, statuses, req });
    const { nodes, pageInfo } = toPage(rows, req);
    return VisionConnection.of(nodes, pageInfo, () => visions.countVisionsForUser(ctx.em, { userId, statuses }));
  }

  @Authorized()
  @Query(() => Vision, {
    nullable: true,
    description: "Any status, including DELETED, for the owner; null when absent or not the caller's.",
  })
  vision(@Arg('id', () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<Vision | null> {
    return visions.findVisionForUser(ctx.em, { id: parseId(id), userId: ctx.user!.userId });
  }

  @Authorized()
  @Mutation(() => Vision)
  createVision(
    @Arg('input', () => CreateVisionInput, { nullable: true }) input: CreateVisionInput | null,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Vision> {
    return visions.createVision(ctx.em, rules(ctx), { userId: ctx.user!.userId, title: input?.title, meta: input?.meta });
  }

  @Authorized()
  @Mutation(() => Vision)
  renameVision(
    @Arg('id', () => ID) id: string,
    @Arg('title', () => String) title: string,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Vision> {
    return visions.renameVision(ctx.em, rules(ctx), { id: parseId(id), userId: ctx.user!.userId, title });
  }

  @Authorized()
  @Mutation(() => Vision, {
    description: 'ACTIVE, FROZEN and DELETED may be set from any status; DELETED is a soft delete and ACTIVE restores.',
  })
  setVisionStatus(
    @Arg('id', () => ID) id: string,
    @Arg('status', () => VisionStatus) status: VisionStatus,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Vision> {
    return visions.setVisionStatus(
      ctx.em,
      { id: parseId(id), userId: ctx.user!.userId, status },
      { stopReply: (visionId) => ctx.dialog.stopVisionReply(visionId, 'status') },
    );
  }

  @FieldResolver(() => VisionMessageConnection, {
    description:
      'The dialog, oldest first, with Relay cursor pagination. Without first/last: the latest\nMAX_MESSAGES messages. Page size above 200 is BAD_USER_INPUT.',
  })
  async messages(@Root() vision: Vision, @Args(() => MessagesArgs) args: MessagesArgs, @Ctx() ctx: GraphQLContext): Promise<VisionMessageConnection> {
    const req = toPageRequest(args, { max: ctx.config.maxPageSize, defaultLast: ctx.config.maxMessages });
    const rows = await ctx.loaders.messagePage.load({ visionId: vision.id, req });
    if (rows.length === 0) {
      // an empty page is either the end of the dialog or a cursor from somewhere else
      for (const [id, field] of [
        [req.afterId, 'after'],
        [req.beforeId, 'before'],
      ] as const) {
        if (id && !(await messageExistsInVision(ctx.em, vision.id, id))) {
          throw new BadUserInputError(`${field} does not point at a message of this vision`, field);
        }
      }
    }
    const { nodes, pageInfo } = toPage(rows, req);
    return VisionMessageConnection.of(nodes, pageInfo, () => ctx.loaders.messageCount.load(vision.id));
  }

  @FieldResolver(() => VisionMessage, { nullable: true })
  async lastMessage(@Root() vision: Vision, @Ctx() ctx: GraphQLContext): Promise<VisionMessage | null> {
    const rows = await ctx.loaders.messagePage.load({ visionId: vision.id, req: LAST_MESSAGE_REQ });
    return rows[0] ?? null;
  }

  @FieldResolver(() => TokenUsage, { description: 'Tokens spent on this vision (tokenscount rows whose meta.visionid is this id).' })
  tokenUsage(@Root() vision: Vision, @Ctx() ctx: GraphQLContext): Promise<TokenUsage> {
    return ctx.loaders.tokenUsage.load(vision.id);
  }
}
