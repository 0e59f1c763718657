import { Migration } from '@mikro-orm/migrations';

/**
 * A vision can be deleted for good (an operator's `delete from visions where id = …`; the API only
 * soft-deletes): its summaries and embeddings go with it, as its messages always did. Before this,
 * `vision_summaries` referenced the vision and the covered message without `on delete cascade`, so
 * deleting a vision that had a summary failed. `coveredthroughid` gets an index of its own: each
 * deleted message looks its summaries up by it (the unique index leads with `visionid`). Files keep
 * `on delete set null`: the orphan sweep removes a file whose vision is gone, object first.
 */
export class Migration20261203000000_vision_delete extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table vision_summaries
      drop constraint if exists vision_summaries_visionid_fkey,
      drop constraint if exists vision_summaries_coveredthroughid_fkey,
      add constraint vision_summaries_visionid_fkey foreign key (visionid) references visions (id) on delete cascade,
      add constraint vision_summaries_coveredthroughid_fkey foreign key (coveredthroughid) references vision_messages (id) on delete cascade`);
    this.addSql(`create index if not exists vision_summaries_coveredthroughid_idx on vision_summaries (coveredthroughid)`);
    this.addSql(`alter table vision_message_embeddings
      drop constraint if exists vision_message_embeddings_visionid_fkey,
      add constraint vision_message_embeddings_visionid_fkey foreign key (visionid) references visions (id) on delete cascade`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table vision_message_embeddings
      drop constraint if exists vision_message_embeddings_visionid_fkey,
      add constraint vision_message_embeddings_visionid_fkey foreign key (visionid) references visions (id)`);
    this.addSql('drop index if exists vision_summaries_coveredthroughid_idx');
    this.addSql(`alter table vision_summaries
      drop constraint if exists vision_summaries_visionid_fkey,
      drop constraint if exists vision_summaries_coveredthroughid_fkey,
      add constraint vision_summaries_visionid_fkey foreign key (visionid) references visions (id),
      add constraint vision_summaries_coveredthroughid_fkey foreign key (coveredthroughid) references vision_messages (id)`);
  }
}
