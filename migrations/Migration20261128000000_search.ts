import { Migration } from '@mikro-orm/migrations';

/**
 * The embeddings tables (also created by the pgvector test on PGlite). Two tables, so the scan
 * over sign bits reads narrow rows (~150 bytes): a 256-float vector (1 KB) stays under TOAST's
 * 2 KB threshold and would otherwise widen every row the scan reads.
 */
export const EMBEDDINGS_TABLE = [
  `create table if not exists vision_message_embeddings (
    messageid uuid primary key references vision_messages (id) on delete cascade,
    visionid uuid not null references visions (id),
    messageat timestamptz not null,
    model text not null,
    dims int not null check (dims > 0),
    signs bit varying not null,
    createdat timestamptz not null default now()
  )`,
  `create index if not exists vision_message_embeddings_visionid_idx on vision_message_embeddings (visionid, messageat, messageid)`,
  `create table if not exists vision_message_vectors (
    messageid uuid primary key references vision_message_embeddings (messageid) on delete cascade,
    embedding float4[] not null
  )`,
];

/**
 * Search and recall (issue 12):
 * - `vision_messages.searchtsv`: a generated tsvector of the content with the `russian` text
 *   search configuration, which stems Cyrillic words with the Russian Snowball stemmer and Latin
 *   words with the English one (people mix languages). Generated, so a message is searchable the
 *   moment it is committed. Content past 100,000 characters is not indexed (tsvector's 1 MB limit).
 * - A GIN index on (visionid, searchtsv) for the messages search can return (btree_gin makes the
 *   uuid a GIN key): a search touches the index entries of the caller's visions only.
 * - `vision_message_embeddings`: one embedding per message (its model, size and sign bits: the
 *   shortlist of the exact ranking, search/vector-store.ts; `messageat` copies the message's time
 *   so recall can look only before the window without a join) and `vision_message_vectors`: the
 *   vector itself as float4[].
 */
export class Migration20261128000000_search extends Migration {
  override async up(): Promise<void> {
    // trusted since PostgreSQL 13: the database owner may create it (every managed offering has it)
    this.addSql(`create extension if not exists btree_gin`);
    this.addSql(
      `alter table vision_messages add column if not exists searchtsv tsvector
       generated always as (to_tsvector('russian'::regconfig, left(content, 100000))) stored`,
    );
    this.addSql(
      `create index if not exists vision_messages_search_idx on vision_messages using gin (visionid, searchtsv)
       where sender in ('user', 'assistant') and messagetype <> 'info' and state in ('complete', 'stopped')`,
    );
    for (const statement of EMBEDDINGS_TABLE) this.addSql(statement);
  }

  override async down(): Promise<void> {
    this.addSql('drop table if exists vision_message_vectors');
    this.addSql('drop table if exists vision_message_embeddings');
    this.addSql('drop index if exists vision_messages_search_idx');
    this.addSql('alter table vision_messages drop column if exists searchtsv');
  }
}
