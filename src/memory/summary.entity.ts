import { Entity, PrimaryKey, Property } from '@mikro-orm/core';
import { Field, ID, Int, ObjectType } from 'type-graphql';
import { v7 as uuidv7 } from 'uuid';
import { pgDate } from '../db/sql';

/** One step of a vision's rolling summary (table `vision_summaries`); the newest row is in use. */
@ObjectType({ description: "v2. The path so far, in the model's words, covering the messages older than the window." })
@Entity({ tableName: 'vision_summaries' })
export class VisionSummary {
  @PrimaryKey({ type: 'uuid' })
  id: string = uuidv7();

  @Property({ type: 'uuid', fieldName: 'visionid' })
  visionId!: string;

  @Field(() => String)
  @Property({ type: 'text' })
  content!: string;

  /** Tokens of the summary as it is sent to the model (with its heading). */
  @Property({ type: 'int' })
  tokens!: number;

  @Field(() => Int, { description: 'How many of the oldest messages of the dialog it covers.' })
  @Property({ type: 'int', fieldName: 'coveredmessages' })
  coveredMessages!: number;

  @Field(() => ID, { nullable: true, description: 'The newest message it covers.' })
  @Property({ type: 'uuid', fieldName: 'coveredthroughid' })
  coveredThroughMessageId!: string;

  /** createdat of the newest message it covers: the window starts after (coveredThroughAt, id). */
  @Property({ type: 'datetime', columnType: 'timestamptz', fieldName: 'coveredthroughat' })
  coveredThroughAt!: Date;

  @Property({ type: 'text', nullable: true })
  model?: string | null;

  @Field(() => Date, { name: 'updatedAt' })
  @Property({ type: 'datetime', columnType: 'timestamptz', fieldName: 'createdat' })
  createdAt: Date = new Date();

  static fromRow(row: Record<string, unknown>): VisionSummary {
    const s = {
      id: row.id as string,
      visionId: row.visionid as string,
      content: row.content as string,
      tokens: row.tokens as number,
      coveredMessages: row.coveredmessages as number,
      coveredThroughMessageId: row.coveredthroughid as string,
      coveredThroughAt: pgDate(row.coveredthroughat),
      model: (row.model as string | null) ?? null,
      createdAt: pgDate(row.createdat),
    };
    return Object.setPrototypeOf(s, VisionSummary.prototype) as VisionSummary;
  }
}
