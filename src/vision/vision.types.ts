import { Field, ID, InputType, Int, ObjectType } from 'type-graphql';
import { GraphQLJSONObject } from 'graphql-scalars';
import { encodeCursor, PageInfo } from '../graphql/relay';
import { VisionMessage } from './message.entity';
import { Vision } from './vision.entity';
import { MessageState } from './vision.enums';

@ObjectType({ simpleResolvers: true })
export class VisionMessageEdge {
  constructor(node: VisionMessage) {
    this.node = node;
  }

  /** Encoded only when a client asks for it. */
  @Field(() => String)
  get cursor(): string {
    return encodeCursor(this.node.id);
  }

  @Field(() => VisionMessage)
  node: VisionMessage;
}

@ObjectType({ simpleResolvers: true })
export class VisionMessageConnection {
  @Field(() => [VisionMessageEdge])
  edges!: VisionMessageEdge[];

  @Field(() => PageInfo)
  pageInfo!: PageInfo;

  /** Counted only when the client asks for it. */
  private countFn!: () => Promise<number>;

  // a method: the one field of the type that needs a resolver (simpleResolvers reads properties)
  @Field(() => Int, { simple: false })
  totalCount(): Promise<number> {
    return this.countFn();
  }

  static of(nodes: VisionMessage[], pageInfo: PageInfo, count: () => Promise<number>): VisionMessageConnection {
    const c = new VisionMessageConnection();
    c.edges = nodes.map((node) => new VisionMessageEdge(node));
    c.pageInfo = pageInfo;
    c.countFn = count;
    return c;
  }
}

@ObjectType({ simpleResolvers: true })
export class VisionEdge {
  constructor(node: Vision) {
    this.node = node;
  }

  /** Encoded only when a client asks for it. */
  @Field(() => String)
  get cursor(): string {
    return encodeCursor(this.node.id);
  }

  @Field(() => Vision)
  node: Vision;
}

@ObjectType({ simpleResolvers: true })
export class VisionConnection {
  @Field(() => [VisionEdge])
  edges!: VisionEdge[];

  @Field(() => PageInfo)
  pageInfo!: PageInfo;

  private countFn!: () => Promise<number>;

  // a method: the one field of the type that needs a resolver (simpleResolvers reads properties)
  @Field(() => Int, { simple: false })
  totalCount(): Promise<number> {
    return this.countFn();
  }

  static of(nodes: Vision[], pageInfo: PageInfo, count: () => Promise<number>): VisionConnection {
    const c = new VisionConnection();
    c.edges = nodes.map((node) => new VisionEdge(node));
    c.pageInfo = pageInfo;
    c.countFn = count;
    return c;
  }
}

@InputType()
export class CreateVisionInput {
  @Field(() => String, { nullable: true, description: 'Optional; the default title is used when absent.' })
  title?: string | null;

  @Field(() => GraphQLJSONObject, { nullable: true })
  meta?: Record<string, unknown> | null;
}

@InputType()
export class SendMessageInput {
  @Field(() => ID)
  visionId!: string;

  @Field(() => String)
  content!: string;

  @Field(() => ID, {
    nullable: true,
    description:
      'Client-generated idempotency key. Sending the same key again for the same vision returns\nthe first result and never calls the model twice.',
  })
  clientMessageId?: string | null;
}

@ObjectType()
export class SendMessagePayload {
  @Field(() => VisionMessage)
  userMessage!: VisionMessage;

  @Field(() => VisionMessage)
  assistantMessage!: VisionMessage;
}

@ObjectType({ description: 'One chunk of an assistant reply while it is being generated.' })
export class ReplyDelta {
  @Field(() => ID)
  visionId!: string;

  @Field(() => ID, { description: 'Id of the assistant message being generated.' })
  replyId!: string;

  @Field(() => Int, { description: '1, 2, 3, ... within one reply; the concatenation of deltas in seq order is the reply text.' })
  seq!: number;

  @Field(() => String)
  delta!: string;

  @Field(() => Boolean, { description: 'True on the last event of the reply, which also carries its final state.' })
  done!: boolean;

  @Field(() => MessageState)
  state!: MessageState;
}
