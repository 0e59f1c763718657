import { Entity, Enum, PrimaryKey, Property } from '@mikro-orm/core';
import { GraphQLJSONObject } from 'graphql-scalars';
import { Field, ID, ObjectType } from 'type-graphql';
import { v7 as uuidv7 } from 'uuid';
import { pgDate, pgDateOrNull } from '../db/sql';
import { Node } from '../graphql/node';
import { MessageSender, MessageState, MessageType } from './vision.enums';

/**
 * The columns a {@link VisionMessage} is read from. Statements list them instead of `*`: the
 * table also holds `searchtsv` (search/), which no reader of messages needs.
 */
export const MESSAGE_COLUMNS = 'id, visionid, sender, messagetype, content, state, payload, clientmessageid, replyto, heartbeatat, tokens, createdat';

/** {@link MESSAGE_COLUMNS} qualified by a table alias. */
export function messageColumns(alias: string): string {
  return MESSAGE_COLUMNS.split(', ').map((c) => `${alias}.${c}`).join(', ');
}

/** One step of the path (seed §2.3). Table `vision_messages`. */
@ObjectType({ implements: Node, simpleResolvers: true })
@Entity({ tableName: 'vision_messages' })
export class VisionMessage {
  @Field(() => ID)
  @PrimaryKey({ type: 'uuid' })
  id: string = uuidv7();

  @Field(() => ID)
  @Property({ type: 'uuid', fieldName: 'visionid' })
  visionId!: string;

  @Field(() => MessageSender)
  @Enum({ items: () => MessageSender, type: 'text' })
  sender!: MessageSender;

  @Field(() => MessageType)
  @Enum({ items: () => MessageType, type: 'text', fieldName: 'messagetype' })
  type: MessageType = MessageType.TEXT;

  @Field(() => String)
  @Property({ type: 'text' })
  content: string = '';

  @Field(() => MessageState)
  @Enum({ items: () => MessageState, type: 'text' })
  state: MessageState = MessageState.COMPLETE;

  @Field(() => GraphQLJSONObject, { nullable: true })
  @Property({ type: 'json', nullable: true })
  payload?: Record<string, unknown> | null;

  /** Client idempotency key, unique per vision; not exposed. */
  @Property({ type: 'text', fieldName: 'clientmessageid', nullable: true })
  clientMessageId?: string | null;

  /** For assistant replies: the user message answered. */
  @Property({ type: 'uuid', fieldName: 'replyto', nullable: true })
  replyTo?: string | null;

  /** Last sign of life of a STREAMING reply. */
  @Property({ type: 'datetime', columnType: 'timestamptz', fieldName: 'heartbeatat', nullable: true })
  heartbeatAt?: Date | null;

  /** Tokens of the content with the model's tokenizer, counted once when stored (null for old rows). */
  @Property({ type: 'int', nullable: true })
  tokens?: number | null;

  @Field(() => Date)
  @Property({ type: 'datetime', columnType: 'timestamptz', fieldName: 'createdat' })
  createdAt: Date = new Date();

  /**
   * A read-only instance from a `vision_messages` row (or its JSON), without the ORM: list and history reads
   * need no identity map or change tracking, and skipping them is most of their CPU.
   */
  static fromRow(row: Record<string, unknown>): VisionMessage {
    // own data properties first, then the prototype: assigning through the prototype would run
    // MikroORM's change-tracking setters for every field
    const m = {
      id: row.id as string,
      visionId: row.visionid as string,
      sender: row.sender as MessageSender,
      type: row.messagetype as MessageType,
      content: row.content as string,
      state: row.state as MessageState,
      payload: (row.payload as Record<string, unknown> | null) ?? null,
      clientMessageId: (row.clientmessageid as string | null) ?? null,
      replyTo: (row.replyto as string | null) ?? null,
      heartbeatAt: pgDateOrNull(row.heartbeatat),
      tokens: (row.tokens as number | null | undefined) ?? null,
      // JSON rows carry the instant as milliseconds too (message.queries.ts): no text to parse
      createdAt: typeof row.createdms === 'number' ? new Date(row.createdms) : pgDate(row.createdat),
    };
    return VisionMessage.read(m);
  }

  /** A read-only instance from its field values (see {@link fromRow}). */
  static read(fields: Pick<VisionMessage, 'id' | 'visionId' | 'sender' | 'type' | 'content' | 'state' | 'payload' | 'clientMessageId' | 'replyTo' | 'heartbeatAt' | 'tokens' | 'createdAt'>): VisionMessage {
    return Object.setPrototypeOf(fields, VisionMessage.prototype) as VisionMessage;
  }
}
