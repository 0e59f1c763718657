import type { GraphQLResolveInfo } from 'graphql';
import { Arg, Args, ArgsType, Authorized, Ctx, Field, FieldResolver, ID, Info, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context';
import { BadUserInputError } from '../graphql/errors';
import { below, lookahead } from '../graphql/lookahead';
import { parseId, toPage, toPageRequest, type PageRequest } from '../graphql/relay';
import { TokenUsage } from '../tokenscount/token-usage.type';
import { VisionMessage } from './message.entity';
import { messageColumnsFor, messageExistsInVision } from './message.queries';
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

/** Without first/last: the latest MAX_MESSAGES messages. */
const messagePageRequest = (args: MessagesArgs, ctx: GraphQLContext): PageRequest =>
  toPageRequest(args, { max: ctx.config.maxPageSize, defaultLast: ctx.config.maxMessages });

const rules = (ctx: GraphQLContext): visions.VisionRules => ctx.config;

@Resolver(() => Vision)
export class VisionResolver {
  @Authorized()
  @Query(() => VisionConnection, {
    description: "The caller's visions, most recently updated first. Default status filter: ACTIVE and FROZEN.",
  })
  async visions(
    @Args(() => VisionsArgs) args: VisionsArgs,
    @Ctx() ctx: GraphQLContext,
    @Info() info: GraphQLResolveInfo,
  ): Promise<VisionConnection> {
    const userId = ctx.user!.userId;
    const statuses = args.status?.length ? [...new Set(args.status)] : visions.DEFAULT_LIST_STATUSES;
    const req = toPageRequest(
      { first: args.first, after: args.after },
      { max: ctx.config.maxPageSize, defaultFirst: ctx.config.maxMessages },
    );
    // what the list shows of each vision is read in the same statement and primes the loaders
    const node = below(below(lookahead(info), 'VisionConnection', 'edges'), 'VisionEdge', 'node');
    const include = { lastMessage: below(node, 'Vision', 'lastMessage').length > 0, tokenUsage: below(node, 'Vision', 'tokenUsage').length > 0 };
    const rows = await visions.listVisionsForUser(ctx.sql, { userId, statuses, req, include });
    const { nodes, pageInfo } = toPage(rows, req);
    const { known } = ctx.loaders;
    for (const row of nodes) {
      if (row.lastMessage !== undefined) known.lastMessage.set(row.id, row.lastMessage);
      if (row.tokenUsage) known.tokenUsage.set(row.id, row.tokenUsage);
    }
    return VisionConnection.of(
      nodes.map((row) => row.vision),
      pageInfo,
      () => visions.countVisionsForUser(ctx.sql, { userId, statuses }),
    );
  }

  @Authorized()
  @Query(() => Vision, {
    nullable: true,
    description: "Any status, including DELETED, for the owner; null when absent or not the caller's.",
  })
  async vision(@Arg('id', () => ID) id: string, @Ctx() ctx: GraphQLContext, @Info() info: GraphQLResolveInfo): Promise<Vision | null> {
    const opts = { id: parseId(id), userId: ctx.user!.userId };
    // a selected `messages` page is read in the same statement as the vision, with the message
    // fields that any `messages` selection here asks for (they share the loader's cache)
    const pages = below(lookahead(info), 'Vision', 'messages');
    const [messages] = pages;
    let req: PageRequest | undefined;
    try {
      if (messages) req = messagePageRequest(messages.args as MessagesArgs, ctx);
    } catch {
      // invalid page arguments: the messages field itself reports them
    }
    if (!req) return visions.findVisionForUser(ctx.sql, opts);
    const nodes = below(below(pages, 'VisionMessageConnection', 'edges'), 'VisionMessageEdge', 'node');
    const columns = messageColumnsFor(nodes.flatMap((n) => Object.values(n.fieldsByTypeName.VisionMessage ?? {}).map((f) => f.name)));
    const found = await visions.findVisionWithMessagePage(ctx.sql, { ...opts, req, columns });
    if (!found) return null;
    ctx.loaders.messagePage.prime({ visionId: found.vision.id, req }, found.messages);
    return found.vision;
  }

  @Authorized()
  @Mutation(() => Vision)
  createVision(
    @Arg('input', () => CreateVisionInput, { nullable: true }) input: CreateVisionInput | null,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Vision> {
    return visions.createVision(ctx.sql, rules(ctx), { userId: ctx.user!.userId, title: input?.title, meta: input?.meta });
  }

  @Authorized()
  @Mutation(() => Vision)
  renameVision(
    @Arg('id', () => ID) id: string,
    @Arg('title', () => String) title: string,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Vision> {
    return visions.renameVision(ctx.sql, rules(ctx), { id: parseId(id), userId: ctx.user!.userId, title });
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
      ctx.sql,
      { id: parseId(id), userId: ctx.user!.userId, status },
      { stopReply: (visionId) => ctx.dialog.stopVisionReply(visionId, 'status') },
    );
  }

  @FieldResolver(() => VisionMessageConnection, {
    description:
      'The dialog, oldest first, with Relay cursor pagination. Without first/last: the latest\nMAX_MESSAGES messages. Page size above 200 is BAD_USER_INPUT.',
  })
  async messages(@Root() vision: Vision, @Args(() => MessagesArgs) args: MessagesArgs, @Ctx() ctx: GraphQLContext): Promise<VisionMessageConnection> {
    const req = messagePageRequest(args, ctx);
    const rows = await ctx.loaders.messagePage.load({ visionId: vision.id, req });
    if (rows.length === 0) {
      // an empty page is either the end of the dialog or a cursor from somewhere else
      for (const [id, field] of [
        [req.afterId, 'after'],
        [req.beforeId, 'before'],
      ] as const) {
        if (id && !(await messageExistsInVision(ctx.sql, vision.id, id))) {
          throw new BadUserInputError(`${field} does not point at a message of this vision`, field);
        }
      }
    }
    const { nodes, pageInfo } = toPage(rows, req);
    return VisionMessageConnection.of(nodes, pageInfo, () => ctx.loaders.messageCount.load(vision.id));
  }

  @FieldResolver(() => VisionMessage, { nullable: true })
  lastMessage(@Root() vision: Vision, @Ctx() ctx: GraphQLContext): VisionMessage | null | Promise<VisionMessage | null> {
    const known = ctx.loaders.known.lastMessage.get(vision.id);
    return known !== undefined ? known : ctx.loaders.lastMessage.load(vision.id);
  }

  @FieldResolver(() => TokenUsage, { description: 'Tokens spent on this vision (tokenscount rows whose meta.visionid is this id).' })
  tokenUsage(@Root() vision: Vision, @Ctx() ctx: GraphQLContext): TokenUsage | Promise<TokenUsage> {
    return ctx.loaders.known.tokenUsage.get(vision.id) ?? ctx.loaders.tokenUsage.load(vision.id);
  }
}
