import type { EntityManager } from '@mikro-orm/postgresql';
import { countStatement } from './sql-stats';

/**
 * The part of an EntityManager that raw statements need: a request's forked one, or
 * `GraphQLContext.sql` (no unit of work) for reads that build their own read objects.
 */
export type SqlRunner = Pick<EntityManager, 'getConnection' | 'getTransactionContext'>;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A PostgreSQL array literal for a `?::uuid[]` parameter. knex expands JS arrays in raw
 * bindings into value lists, so arrays travel as one text parameter; only canonical UUIDs are
 * accepted, so nothing needs escaping.
 */
export function uuidArray(ids: readonly string[]): string {
  for (const id of ids) if (!UUID_RE.test(id)) throw new TypeError(`not a uuid: ${id}`);
  return `{${ids.join(',')}}`;
}

/** Same for text values: each element is double-quoted with `\` and `"` escaped. */
export function textArray(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`).join(',')}}`;
}

/**
 * A timestamp from a raw row. MikroORM makes the pg driver return timestamptz as text (to keep
 * microseconds out of JS dates); `2026-11-24 04:38:27.123456+00` parses as an instant.
 */
export function pgDate(value: unknown): Date {
  return value instanceof Date ? value : new Date(value as string);
}

export function pgDateOrNull(value: unknown): Date | null {
  return value === null || value === undefined ? null : pgDate(value);
}

interface PooledClient {
  query(text: string, values: unknown[]): Promise<{ rows: unknown[] }>;
}
interface KnexPool {
  acquireConnection(): Promise<PooledClient>;
  releaseConnection(client: PooledClient): unknown;
}

const positional = new Map<string, string>();

/** `?` placeholders (knex style) → `$1, $2, …` (PostgreSQL's). The statements of this code base have no `?` operators. */
function toPositional(sql: string): string {
  let text = positional.get(sql);
  if (text === undefined) {
    let n = 0;
    text = sql.replace(/\?/g, () => `$${++n}`);
    if (positional.size < 1000) positional.set(sql, text);
  }
  return text;
}

/** An open transaction on one pooled connection (see {@link inTransaction}). */
export interface SqlTx {
  readonly client: PooledClient;
}

/** Where a statement runs: the pool (or an ORM transaction), or a {@link SqlTx}. */
export type SqlOn = SqlRunner | SqlTx;

function poolOf(em: SqlRunner): KnexPool {
  return em.getConnection().getKnex().client as unknown as KnexPool;
}

/**
 * Runs one statement with `?` placeholders and returns its rows, on the `pg` client itself:
 * parameters are sent separately (no SQL formatting, no query builder), which on the hot paths
 * costs a fraction of the knex/MikroORM statement path (BENCHMARKS.md). Outside a transaction
 * it borrows a connection from the ORM's pool: same pool, same type parsers, same timeouts.
 * Counted in the per-request statement stats. Inside an ORM transaction it runs through the ORM
 * on the transaction's connection.
 */
export async function queryRows<R = Record<string, unknown>>(on: SqlOn, sql: string, params: unknown[]): Promise<R[]> {
  if ('client' in on) {
    countStatement();
    return (await on.client.query(toPositional(sql), params)).rows as R[];
  }
  const trx = on.getTransactionContext();
  if (trx) return on.getConnection().execute<R[]>(sql, params, 'all', trx);
  const pool = poolOf(on);
  const client = await pool.acquireConnection();
  try {
    countStatement();
    return (await client.query(toPositional(sql), params)).rows as R[];
  } finally {
    pool.releaseConnection(client);
  }
}

/**
 * `begin`, `fn`, `commit` (or `rollback` when `fn` throws) on one connection of the ORM's pool,
 * for units of raw statements (no entities to flush). Cheaper than `em.transactional`, which
 * forks a unit of work and enters an AsyncLocalStorage (that switches on promise hooks for the
 * whole process on Node 20).
 */
export async function inTransaction<T>(em: SqlRunner, fn: (tx: SqlTx) => Promise<T>): Promise<T> {
  const pool = poolOf(em);
  const client = await pool.acquireConnection();
  const tx: SqlTx = { client };
  try {
    await queryRows(tx, 'begin', []);
    const out = await fn(tx);
    await queryRows(tx, 'commit', []);
    return out;
  } catch (err) {
    // a connection whose rollback fails is broken: the pool drops it (knex marks it disposed)
    await queryRows(tx, 'rollback', []).catch(() => undefined);
    throw err;
  } finally {
    pool.releaseConnection(client);
  }
}
