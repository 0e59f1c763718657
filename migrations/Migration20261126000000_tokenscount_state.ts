import { Migration } from '@mikro-orm/migrations';

/**
 * `tokenscount.state`: a row is written `pending` when a model call starts and `settled` when it
 * ends, so that a process killed mid-stream still leaves its row (the stale sweeper settles it
 * with the prompt estimate). Rows written before this migration are settled. The partial index
 * holds only the calls in flight, which is what the sweeper and the settling by meta look up.
 */
export class Migration20261126000000_tokenscount_state extends Migration {
  override async up(): Promise<void> {
    // a constant default: PostgreSQL 11+ adds the column without rewriting the table
    this.addSql(`
      alter table tokenscount add column if not exists state text not null default 'settled'
        constraint tokenscount_state_check check (state in ('pending', 'settled'))`);
    this.addSql(`create index if not exists tokenscount_pending_createdat_idx on tokenscount (createdat) where state = 'pending'`);
  }

  override async down(): Promise<void> {
    this.addSql('drop index if exists tokenscount_pending_createdat_idx');
    this.addSql('alter table tokenscount drop column if exists state');
  }
}
