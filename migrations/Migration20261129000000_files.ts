import { Migration } from '@mikro-orm/migrations';

/**
 * Files (issue 13): `file_uploads`, the intent log of object writes. A row is committed before
 * an object is written and removed in the transaction that writes the object's `files` row, so
 * the orphan sweep deletes exactly the objects this database started and never recorded (a
 * crash between the two writes), never an object it does not know (a bucket or directory shared
 * with another database, a backup restored elsewhere).
 */
export class Migration20261129000000_files extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table if not exists file_uploads (
      fileid uuid primary key,
      storagepath text not null,
      createdat timestamptz not null default now()
    )`);
    this.addSql(`create index if not exists file_uploads_createdat_idx on file_uploads (createdat)`);
  }

  override async down(): Promise<void> {
    this.addSql('drop table if exists file_uploads');
  }
}
