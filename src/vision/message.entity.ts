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
const COLUMNS = ['id', 'visionid', 'sender', 'messagetype', 'content', 'state', 'payload', 'clientmessageid', 'replyto', 'heartbeatat', 'tokens', 'createdat'] as const;
export const MESSAGE_COLUMNS = COLUMNS.join(', ');

/** {@link MESSAGE_COLUMNS} qualified by a table alias. */
export function messageColumns(alias: string): string {
  return COLUMNS.map((c) => `${alias}.${c}`).join(', ');
}

/** Where a row keeps each column of a message (see {@link VisionMessage.fromRow}); `createdms` is the instant in milliseconds. */
export type MessageRowKeys = Record<(typeof COLUMNS)[number] | 'createdms', string>;

const rowKeys = (prefix: string) => Object.fromEntries([...COLUMNS, 'createdms'].map((c) => [c, prefix + c])) as MessageRowKeys;

/** A row with the columns under their own names. */
export const MESSAGE_ROW = rowKeys('');
/** A row whose message columns are prefixed `m_` (a page or last message joined to its vision). */
export const PREFIXED_MESSAGE_ROW = rowKeys('m_');

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
   * A read-only instance from a `vision_messages` row, without the ORM: list and history reads
   * need no identity map or change tracking, and skipping them is most of their CPU. `keys` says
   * where the row keeps each column ({@link PREFIXED_MESSAGE_ROW} for a page joined to its vision);
   * a row may carry the instant as `createdms` (milliseconds, no text to parse) instead of `createdat`.
   */
  static fromRow(row: Record<string, unknown>, keys: MessageRowKeys = MESSAGE_ROW): VisionMessage {
    const ms = row[keys.createdms];
    // own data properties first, then the prototype: assigning through the prototype would run
    // MikroORM's change-tracking setters for every field
    const m = {
      id: row[keys.id] as string,
      visionId: row[keys.visionid] as string,
      sender: row[keys.sender] as MessageSender,
      type: row[keys.messagetype] as MessageType,
      content: row[keys.content] as string,
      state: row[keys.state] as MessageState,
      payload: (row[keys.payload] as Record<string, unknown> | null | undefined) ?? null,
      clientMessageId: (row[keys.clientmessageid] as string | null | undefined) ?? null,
      replyTo: (row[keys.replyto] as string | null | undefined) ?? null,
      heartbeatAt: pgDateOrNull(row[keys.heartbeatat]),
      tokens: (row[keys.tokens] as number | null | undefined) ?? null,
      createdAt: typeof ms === 'number' ? new Date(ms) : pgDate(row[keys.createdat]),
    };
    return Object.setPrototypeOf(m, VisionMessage.prototype) as VisionMessage;
  }
}
