import { Migration } from '@mikro-orm/migrations';

/**
 * The four tables of the seed (visions, vision_messages, files, tokenscount) with the seed's
 * names, plus what the API needs on messages: `state` (reply lifecycle), `clientmessageid`
 * (idempotency key, unique per vision), `replyto` (the user message a reply answers) and
 * `heartbeatat` (last sign of life of a STREAMING reply, so a crashed process never blocks a
 * vision).
 */
export class Migration20261124000000_init extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      create table if not exists visions (
        id uuid primary key,
        userid text not null,
        title text not null,
        status text not null default 'active'
          constraint visions_status_check check (status in ('active', 'frozen', 'deleted')),
        createdat timestamptz not null default now(),
        updatedat timestamptz not null default now(),
        meta jsonb
      )`);
    // the list query: a user's visions in a status set, most recently updated first
    this.addSql(`create index if not exists visions_userid_status_updatedat_idx on visions (userid, status, updatedat desc, id desc)`);

    this.addSql(`
      create table if not exists vision_messages (
        id uuid primary key,
        visionid uuid not null constraint vision_messages_visionid_fkey references visions (id) on delete cascade,
        sender text not null
          constraint vision_messages_sender_check check (sender in ('user', 'assistant', 'system')),
        messagetype text not null default 'text'
          constraint vision_messages_messagetype_check check (messagetype in ('text', 'audio', 'file_result', 'info')),
        content text not null default '',
        payload jsonb,
        state text not null default 'complete'
          constraint vision_messages_state_check check (state in ('streaming', 'complete', 'stopped', 'failed')),
        clientmessageid text,
        replyto uuid,
        heartbeatat timestamptz,
        createdat timestamptz not null default now()
      )`);
    // history window and both pagination directions: (visionid, createdat, id)
    this.addSql(`create index if not exists vision_messages_visionid_createdat_id_idx on vision_messages (visionid, createdat, id)`);
    this.addSql(`create unique index if not exists vision_messages_visionid_clientmessageid_key on vision_messages (visionid, clientmessageid) where clientmessageid is not null`);
    // one reply at a time per vision, across every server instance
    this.addSql(`create unique index if not exists vision_messages_one_streaming_key on vision_messages (visionid) where state = 'streaming'`);
    // replies of a user message (retry, idempotent repeats)
    this.addSql(`create index if not exists vision_messages_replyto_idx on vision_messages (replyto) where replyto is not null`);

    this.addSql(`
      create table if not exists files (
        id uuid primary key,
        visionid uuid constraint files_visionid_fkey references visions (id) on delete set null,
        storagepath text not null,
        filename text not null,
        mime text not null,
        size bigint not null default 0,
        createdat timestamptz not null default now(),
        meta jsonb
      )`);
    this.addSql(`create index if not exists files_visionid_idx on files (visionid)`);

    this.addSql(`
      create table if not exists tokenscount (
        id bigserial primary key,
        clientid text,
        clienttype text,
        provider text,
        model text,
        prompttokens integer,
        completiontokens integer,
        totaltokens integer,
        rawusage jsonb,
        meta jsonb,
        createdat timestamptz default now()
      )`);
    this.addSql(`create index if not exists tokenscount_clientid_createdat_idx on tokenscount (clientid, createdat)`);
    this.addSql(`create index if not exists tokenscount_meta_visionid_idx on tokenscount ((meta ->> 'visionid'))`);
  }

  override async down(): Promise<void> {
    this.addSql('drop table if exists tokenscount');
    this.addSql('drop table if exists files');
    this.addSql('drop table if exists vision_messages');
    this.addSql('drop table if exists visions');
  }
}
