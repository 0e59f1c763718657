import { Migration } from '@mikro-orm/migrations';

/**
 * Memory of the whole path (issue 11):
 * - `vision_messages.tokens`: the content's token count with the model's tokenizer, stored when
 *   the message is stored, so a context is assembled without tokenizing history again (null for
 *   rows older than this migration: counted when first needed, then stored);
 * - `vision_summaries`: the rolling summary of the messages that left the window. A new row per
 *   step keeps each summary's coverage (how many of the oldest eligible messages, through which
 *   one); the newest row is the one in use.
 */
export class Migration20261127000000_memory extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table vision_messages add column if not exists tokens int check (tokens >= 0)`);
    this.addSql(`
      create table if not exists vision_summaries (
        id uuid primary key,
        visionid uuid not null references visions (id),
        content text not null,
        tokens int not null check (tokens >= 0),
        coveredmessages int not null check (coveredmessages > 0),
        coveredthroughid uuid not null references vision_messages (id),
        coveredthroughat timestamptz not null,
        model text,
        createdat timestamptz not null default now()
      )`);
    // the newest summary of a vision; one row per covered step (two instances never store the same step twice)
    this.addSql(`create index if not exists vision_summaries_visionid_createdat_idx on vision_summaries (visionid, createdat desc, id desc)`);
    this.addSql(`create unique index if not exists vision_summaries_visionid_coveredthroughid_key on vision_summaries (visionid, coveredthroughid)`);
  }

  override async down(): Promise<void> {
    this.addSql('drop table if exists vision_summaries');
    this.addSql('alter table vision_messages drop column if exists tokens');
  }
}
