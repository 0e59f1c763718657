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
