import { Entity, Enum, PrimaryKey, Property } from '@mikro-orm/core';
import { GraphQLJSONObject } from 'graphql-scalars';
import { Field, ID, ObjectType } from 'type-graphql';
import { v7 as uuidv7 } from 'uuid';
import { pgDate } from '../db/sql';
import { Node } from '../graphql/node';
import { VisionStatus } from './vision.enums';

/** The object of a person's path (seed §2.2). Table `visions`. */
@ObjectType({ implements: Node, simpleResolvers: true })
@Entity({ tableName: 'visions' })
export class Vision {
  @Field(() => ID)
  @PrimaryKey({ type: 'uuid' })
  id: string = uuidv7();

  /** Owner; never exposed through GraphQL. */
  @Property({ type: 'text', fieldName: 'userid' })
  userId!: string;

  @Field(() => String, { description: "Defaults to 'Визия от DD.MM.YYYY' (the creation date)." })
  @Property({ type: 'text' })
  title!: string;

  @Field(() => VisionStatus)
  @Enum({ items: () => VisionStatus, type: 'text' })
  status: VisionStatus = VisionStatus.ACTIVE;

  @Field(() => GraphQLJSONObject, { nullable: true })
  @Property({ type: 'json', nullable: true })
  meta?: Record<string, unknown> | null;

  @Field(() => Date)
  @Property({ type: 'datetime', columnType: 'timestamptz', fieldName: 'createdat' })
  createdAt: Date = new Date();

  @Field(() => Date, { description: 'Bumped by every change and every new message.' })
  @Property({ type: 'datetime', columnType: 'timestamptz', fieldName: 'updatedat' })
  updatedAt: Date = new Date();

  /** A read-only instance from a `visions` row, without the ORM (see VisionMessage.fromRow). */
  static fromRow(row: Record<string, unknown>): Vision {
    const v = {
      id: row.id as string,
      userId: row.userid as string,
      title: row.title as string,
      status: row.status as VisionStatus,
      meta: (row.meta as Record<string, unknown> | null) ?? null,
      createdAt: pgDate(row.createdat),
      updatedAt: pgDate(row.updatedat),
    };
    return Object.setPrototypeOf(v, Vision.prototype) as Vision;
  }
}
