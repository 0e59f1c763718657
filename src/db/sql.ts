import type { EntityManager } from '@mikro-orm/postgresql';
import { createHash } from 'node:crypto';
import { countStatement } from './sql-stats';

/**
 * The part of an EntityManager that raw statements need: a request's forked one, or
 * `GraphQLContext.sql` (no unit of work) for reads that build their own read objects.
 */
export type SqlRunner = Pick<EntityManager, 'getConnection' | 'getTransactionContext'>;

/**
 * Raw statements on the ORM's pool outside any unit of work: for services that build their own
 * read objects and never flush entities (no identity map to keep apart, nothing to fork).
 */
export function poolRunner(em: Pick<EntityManager, 'getConnection'>): SqlRunner {
  return { getConnection: () => em.getConnection(), getTransactionContext: () => undefined };
}

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

/**
 * `limit <n>` as a literal, for the hot reads. With the limit as a parameter, PostgreSQL's plan
 * cache judged the generic plan (which cannot know the limit) dearer than a custom one and planned
 * the statement again at every execution: twice the statement's time for a history page
 * (pgbench, BENCHMARKS.md issue 16). A page size is one of a few hundred values, so the distinct
 * statement texts stay few. Only integers pass.
 */
export function limitSql(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`not a row limit: ${n}`);
  return `limit ${n}`;
}

/**
 * A statement that runs inside another statement, as one of its CTEs (`with x as (…)`): its text
 * with `?` placeholders and their values in order. A data-modifying CTE runs whether or not the
 * rest of the statement reads it, atomically with it.
 */
export interface SqlPart {
  sql: string;
  params: unknown[];
}

interface PooledClient {
  query(config: { text: string; values: unknown[]; name?: string }): Promise<{ rows: unknown[] }>;
  query(text: string): Promise<{ rows: unknown[] }>;
  /** pg's record of the statements this connection has prepared. */
  connection?: { parsedStatements?: Record<string, string> };
}
interface KnexPool {
  acquireConnection(): Promise<PooledClient>;
  releaseConnection(client: PooledClient): unknown;
}

interface Prepared {
  text: string;
  name: string;
}
const prepared = new Map<string, Prepared>();

/**
 * The statement as PostgreSQL takes it: `?` placeholders (knex style) become `$1, $2, …` (the
 * statements of this code base have no `?` operators), under a name derived from the text.
 */
function statementOf(sql: string): Prepared {
  let p = prepared.get(sql);
  if (p === undefined) {
    let n = 0;
    const text = sql.replace(/\?/g, () => `$${++n}`);
    p = { text, name: `vp_${createHash('sha1').update(text).digest('hex').slice(0, 20)}` };
    if (prepared.size < 1000) prepared.set(sql, p);
  }
  return p;
}

/**
 * Runs a statement. Outside transactions as a named prepared statement: each pooled connection
 * parses and plans it once (as PostGraphile does), which saves PostgreSQL's CPU on every later
 * run; when a migration has changed a table under a prepared `select *` (PostgreSQL: "cached
 * plan must not change result type"), the statement is deallocated and prepared again, once.
 * Inside a transaction that retry would be impossible (the transaction is aborted), so there the
 * statement is sent unnamed.
 */
async function run(client: PooledClient, sql: string, values: unknown[], inTx: boolean): Promise<unknown[]> {
  const { text, name } = statementOf(sql);
  countStatement();
  if (inTx) return (await client.query({ text, values })).rows;
  try {
    return (await client.query({ name, text, values })).rows;
  } catch (err) {
    if ((err as { code?: string }).code !== '0A000') throw err;
    await client.query(`deallocate "${name}"`);
    delete client.connection?.parsedStatements?.[name];
    return (await client.query({ name, text, values })).rows;
  }
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
  if ('client' in on) return (await run(on.client, sql, params, true)) as R[];
  const trx = on.getTransactionContext();
  if (trx) return on.getConnection().execute<R[]>(sql, params, 'all', trx);
  const pool = poolOf(on);
  const client = await pool.acquireConnection();
  try {
    return (await run(client, sql, params, false)) as R[];
  } finally {
    pool.releaseConnection(client);
  }
}

async function control(client: PooledClient, command: 'begin' | 'commit' | 'rollback'): Promise<void> {
  countStatement();
  await client.query(command);
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
    await control(client, 'begin');
    const out = await fn(tx);
    await control(client, 'commit');
    return out;
  } catch (err) {
    // a connection whose rollback fails is broken: the pool drops it (knex marks it disposed)
    await control(client, 'rollback').catch(() => undefined);
    throw err;
  } finally {
    pool.releaseConnection(client);
  }
}
