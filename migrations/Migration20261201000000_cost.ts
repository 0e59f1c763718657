import { Migration } from '@mikro-orm/migrations';

/**
 * Usage as money (issue 14): `tokenscount.costmicrousd`, the cost of the call in micro-USD at the
 * price in force when the row was written and settled (tokenscount/prices.ts); null when the
 * model had no price. Rows written before it stay null (unpriced).
 */
export class Migration20261201000000_cost extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table tokenscount add column if not exists costmicrousd bigint`);
  }

  override async down(): Promise<void> {
    this.addSql('alter table tokenscount drop column if exists costmicrousd');
  }
}
