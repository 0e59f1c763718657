import type { EntityManager } from '@mikro-orm/postgresql';

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
