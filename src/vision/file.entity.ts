import { BigIntType, Entity, PrimaryKey, Property } from '@mikro-orm/core';
import { Field, ID, Int, ObjectType } from 'type-graphql';
import { v7 as uuidv7 } from 'uuid';
import { pgDate } from '../db/sql';

/** A file the assistant produced (seed §2.4). Table `files`. */
@ObjectType()
@Entity({ tableName: 'files' })
export class File {
  @Field(() => ID)
  @PrimaryKey({ type: 'uuid' })
  id: string = uuidv7();

  @Field(() => ID, { nullable: true, description: 'v2.' })
  @Property({ type: 'uuid', fieldName: 'visionid', nullable: true })
  visionId?: string | null;

  /** Where the bytes live (path or URL); never exposed. */
  @Property({ type: 'text', fieldName: 'storagepath' })
  storagePath!: string;

  @Field(() => String)
  @Property({ type: 'text' })
  filename!: string;

  @Field(() => String)
  @Property({ type: 'text' })
  mime!: string;

  /** bigint in the table; a JS number is exact up to 8 PiB. */
  @Field(() => Int)
  @Property({ type: new BigIntType('number') })
  size!: number;

  @Field(() => Date)
  @Property({ type: 'datetime', columnType: 'timestamptz', fieldName: 'createdat' })
  createdAt: Date = new Date();

  @Property({ type: 'json', nullable: true })
  meta?: Record<string, unknown> | null;

  /** A read-only instance from a `files` row, without the ORM. */
  static fromRow(row: Record<string, unknown>): File {
    const f = {
      id: row.id as string,
      visionId: (row.visionid as string | null) ?? null,
      storagePath: row.storagepath as string,
      filename: row.filename as string,
      mime: row.mime as string,
      size: Number(row.size),
      createdAt: pgDate(row.createdat),
      meta: (row.meta as Record<string, unknown> | null) ?? null,
    };
    return Object.setPrototypeOf(f, File.prototype) as File;
  }
}
