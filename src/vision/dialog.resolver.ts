import { Arg, Authorized, Ctx, ID, Int, Mutation, Resolver, Root, Subscription } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context';
import { BadUserInputError } from '../graphql/errors';
import { Topic, type ReplyDeltaEvent, type StoredMessageEvent } from '../graphql/pubsub';
import { parseId } from '../graphql/relay';
import { VisionMessage } from './message.entity';
import { findRepliesFrom } from './dialog.queries';
import { replyDeltaStream } from './reply-stream';
import { getVisionForUser } from './vision.service';
import { ReplyDelta, SendMessageInput, SendMessagePayload } from './vision.types';

function toMessage(e: StoredMessageEvent): VisionMessage {
  return VisionMessage.fromRow({
    id: e.id,
    visionid: e.visionId,
    sender: e.sender,
    messagetype: e.type,
    content: e.content,
    state: e.state,
    payload: e.payload,
    createdat: new Date(e.createdAt),
  });
}

/** Ownership is checked once, when the subscription starts (NOT_FOUND for someone else's vision). */
async function ownedVisionId(visionId: unknown, ctx: GraphQLContext): Promise<string> {
  const id = parseId(String(visionId), 'visionId');
  await getVisionForUser(ctx.sql, { id, userId: ctx.user!.userId });
  return id;
}

@Resolver()
export class DialogResolver {
  @Authorized()
  @Mutation(() => SendMessagePayload, {
    description:
      'Stores the user message, asks the model with the windowed history, stores and returns the\nreply. The reply is generated and stored even if the client disconnects before it is done.',
  })
  async sendMessage(@Arg('input', () => SendMessageInput) input: SendMessageInput, @Ctx() ctx: GraphQLContext): Promise<SendMessagePayload> {
    return Object.assign(new SendMessagePayload(), await ctx.dialog.sendMessage(ctx.user!.userId, input));
  }

  @Authorized()
  @Mutation(() => SendMessagePayload, {
    description: 'Asks the model again for the latest user message when it has no COMPLETE or STOPPED reply.',
  })
  async retryReply(@Arg('visionId', () => ID) visionId: string, @Ctx() ctx: GraphQLContext): Promise<SendMessagePayload> {
    return Object.assign(new SendMessagePayload(), await ctx.dialog.retryReply(ctx.user!.userId, visionId));
  }

  @Authorized()
  @Mutation(() => Boolean, {
    description: 'Stops the reply being generated for this vision; the partial text is stored. False when none was running.',
  })
  stopReply(@Arg('visionId', () => ID) visionId: string, @Ctx() ctx: GraphQLContext): Promise<boolean> {
    return ctx.dialog.stopReply(ctx.user!.userId, visionId);
  }

  @Authorized()
  @Subscription(() => VisionMessage, {
    description: 'Every message stored in this vision (user, assistant, system), as it is committed.',
    subscribe: async ({ args, context }) =>
      (context as GraphQLContext).pubsub.subscribe(Topic.MESSAGE_ADDED, await ownedVisionId(args.visionId, context as GraphQLContext)),
  })
  messageAdded(@Root() event: StoredMessageEvent, @Arg('visionId', () => ID) _visionId: string): VisionMessage {
    return toMessage(event);
  }

  @Authorized()
  @Subscription(() => ReplyDelta, {
    description:
      'The assistant reply as it streams from the model; the last event has done: true.\nWith afterSeq, a client that reconnects first receives the chunks of the reply in progress\nafter that sequence number, then the live ones: nothing is missed or repeated.',
    subscribe: async ({ args, context }) => {
      if (args.afterSeq != null && (!Number.isInteger(args.afterSeq) || args.afterSeq < 0)) {
        throw new BadUserInputError('afterSeq must be a non-negative integer', 'afterSeq');
      }
      const ctx = context as GraphQLContext;
      const visionId = await ownedVisionId(args.visionId, ctx);
      const replyId = args.replyId == null ? null : parseId(String(args.replyId), 'replyId');
      if (replyId && (await findRepliesFrom(ctx.sql, visionId, replyId, 1)).length === 0) {
        throw new BadUserInputError('replyId does not point at a reply of this vision', 'replyId');
      }
      return replyDeltaStream({ pubsub: ctx.pubsub, events: ctx.dialog.events, sql: ctx.sql, visionId, afterSeq: args.afterSeq as number | null, replyId });
    },
  })
  replyDelta(
    @Root() event: ReplyDeltaEvent,
    @Arg('visionId', () => ID) _visionId: string,
    @Arg('afterSeq', () => Int, { nullable: true }) _afterSeq?: number | null,
    @Arg('replyId', () => ID, {
      nullable: true,
      description:
        'The reply that afterSeq counts in. The resume then delivers the rest of that reply (its end,\nfrom the stored message when its chunks are gone) and every later reply from its start.\nWithout it, afterSeq counts in the newest reply.',
    })
    _replyId?: string | null,
  ): ReplyDelta {
    return Object.assign(new ReplyDelta(), event);
  }
}
