import { Migration } from '@mikro-orm/migrations';

/**
 * The float4 store's in-process sign index (src/search/sign-index.ts) reads, before each use,
 * the embedding rows of a vision written since its last read: this index makes that read touch
 * only the new rows.
 */
export class Migration20261130000000_sign_index extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create index if not exists vision_message_embeddings_visionid_createdat_idx on vision_message_embeddings (visionid, createdat)`);
  }

  override async down(): Promise<void> {
    this.addSql('drop index if exists vision_message_embeddings_visionid_createdat_idx');
  }
}
