import { AsyncLocalStorage } from 'node:async_hooks';

/** Statements run on behalf of one GraphQL request. */
export interface SqlStats {
  statements: number;
}

/**
 * Per-request SQL statement counter. The HTTP handler runs each request inside
 * `sqlStats.run(...)`; the driver's query hook adds one per statement. Used by the
 * `x-sql-statements` response header (EXPOSE_SQL_STATS), the N+1 test and the benchmarks.
 */
export const sqlStats = new AsyncLocalStorage<SqlStats>();

export function countStatement(): void {
  const s = sqlStats.getStore();
  if (s) s.statements++;
}
