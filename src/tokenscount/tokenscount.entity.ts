import { BigIntType, Entity, PrimaryKey, Property } from '@mikro-orm/core';

/**
 * One row per model call (seed §2.5), for any module: visions, visitors, system jobs.
 * Every seed column but id is nullable, as in the seed; `state` is ours (see the migration).
 */
@Entity({ tableName: 'tokenscount' })
export class TokensCount {
  @PrimaryKey({ type: new BigIntType('string'), autoincrement: true })
  id!: string;

  @Property({ type: 'text', fieldName: 'clientid', nullable: true })
  clientId?: string | null;

  @Property({ type: 'text', fieldName: 'clienttype', nullable: true })
  clientType?: string | null;

  @Property({ type: 'text', nullable: true })
  provider?: string | null;

  @Property({ type: 'text', nullable: true })
  model?: string | null;

  @Property({ type: 'integer', fieldName: 'prompttokens', nullable: true })
  promptTokens?: number | null;

  @Property({ type: 'integer', fieldName: 'completiontokens', nullable: true })
  completionTokens?: number | null;

  @Property({ type: 'integer', fieldName: 'totaltokens', nullable: true })
  totalTokens?: number | null;

  @Property({ type: 'json', fieldName: 'rawusage', nullable: true })
  rawUsage?: Record<string, unknown> | null;

  @Property({ type: 'json', nullable: true })
  meta?: Record<string, unknown> | null;

  @Property({ type: 'datetime', columnType: 'timestamptz', fieldName: 'createdat', nullable: true })
  createdAt?: Date = new Date();

  /** `pending` while the call runs (or after its process died), `settled` once its numbers are final. */
  @Property({ type: 'text', default: 'settled' })
  state: 'pending' | 'settled' = 'settled';
}
