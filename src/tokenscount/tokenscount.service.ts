import { queryRows, textArray, type SqlRunner } from '../db/sql';
import { TokenUsage } from './token-usage.type';

const META_KEY_RE = /^[a-z][a-z0-9_]{0,62}$/;

/** The sums of a group of rows (`calls`, tokens, `estimatedCalls`), as select-list SQL. */
export const USAGE_SUMS_SQL = `count(*)::int as calls,
  least(coalesce(sum(prompttokens), 0), 2147483647)::int as "promptTokens",
  least(coalesce(sum(completiontokens), 0), 2147483647)::int as "completionTokens",
  least(coalesce(sum(totaltokens), 0), 2147483647)::int as "totalTokens",
  (count(*) filter (where meta ->> 'estimated' = 'true'))::int as "estimatedCalls",
  case when count(*) filter (where costmicrousd is null) = 0 then coalesce(sum(costmicrousd), 0)::float8 / 1000000 end as "costUsd"`;

type SumRow = { calls: number; promptTokens: number; completionTokens: number; totalTokens: number; estimatedCalls: number; costUsd: number | null };

function toUsage(row: SumRow | undefined): TokenUsage {
  return row ? Object.assign(new TokenUsage(), row) : TokenUsage.empty();
}

/** The usage columns (`calls`, `promptTokens`, `completionTokens`, `totalTokens`) of a row that selected {@link usageByMetaSql}. */
export function usageFromRow(row: Record<string, unknown>): TokenUsage {
  return Object.assign(new TokenUsage(), {
    calls: row.calls as number,
    promptTokens: row.promptTokens as number,
    completionTokens: row.completionTokens as number,
    totalTokens: row.totalTokens as number,
    estimatedCalls: row.estimatedCalls as number,
    costUsd: row.costUsd === null || row.costUsd === undefined ? null : Number(row.costUsd),
  });
}

/**
 * A subquery with the usage of one value of a top-level `meta` key, for another module's
 * statement to join laterally (`left join lateral (…) u on true`): `valueSql` is an SQL
 * expression of that statement, e.g. `v.id::text`. Same sums and index as {@link sumUsageByMeta}.
 */
export function usageByMetaSql(key: string, valueSql: string): string {
  if (!META_KEY_RE.test(key)) throw new TypeError(`invalid meta key ${key}`);
  return `select ${USAGE_SUMS_SQL} from tokenscount where meta ->> '${key}' = ${valueSql}`;
}

/**
 * Usage summed per value of a top-level `meta` key (for example `visionid`), one statement for
 * all values. The key is spliced into the SQL so that the expression index on
 * `(meta ->> 'key')` applies; it is checked against a strict pattern first.
 */
export async function sumUsageByMeta(
  em: SqlRunner,
  key: string,
  values: readonly string[],
): Promise<TokenUsage[]> {
  if (!META_KEY_RE.test(key)) throw new TypeError(`invalid meta key ${key}`);
  if (values.length === 0) return [];
  const rows = await queryRows<SumRow & { k: string }>(
    em,
    `select meta ->> '${key}' as k, ${USAGE_SUMS_SQL} from tokenscount where meta ->> '${key}' = any(?::text[]) group by 1`,
    [textArray(values)],
  );
  const map = new Map(rows.map((r) => [r.k, r]));
  return values.map((v) => toUsage(map.get(v)));
}

/** Usage of one client over every module, optionally within [since, until). */
export async function sumUsageForClient(
  em: SqlRunner,
  opts: { clientId: string; clientType: string; since?: Date | null; until?: Date | null },
): Promise<TokenUsage> {
  const conds = ['clientid = ?', 'clienttype = ?'];
  const params: unknown[] = [opts.clientId, opts.clientType];
  if (opts.since) {
    conds.push('createdat >= ?');
    params.push(opts.since);
  }
  if (opts.until) {
    conds.push('createdat < ?');
    params.push(opts.until);
  }
  const rows = await queryRows<SumRow>(em, `select ${USAGE_SUMS_SQL} from tokenscount where ${conds.join(' and ')}`, params);
  return toUsage(rows[0]);
}
