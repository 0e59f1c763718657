import { Field, ID, ObjectType, registerEnumType } from 'type-graphql';
import { queryRows, type SqlRunner } from '../db/sql';
import { TokenUsage } from './token-usage.type';
import { USAGE_SUMS_SQL, usageFromRow } from './tokenscount.service';

/** What usage can be grouped by. The keys other modules pass in `meta` (`module`, `visionid`, `purpose`) are read from there. */
export enum UsageGroup {
  DAY = 'DAY',
  MODEL = 'MODEL',
  MODULE = 'MODULE',
  VISION = 'VISION',
  PURPOSE = 'PURPOSE',
}

registerEnumType(UsageGroup, {
  name: 'UsageGroup',
  valuesConfig: {
    DAY: { description: 'Calendar day in UTC, as YYYY-MM-DD.' },
    MODULE: { description: 'meta.module of the rows ("vision", ...).' },
    PURPOSE: { description: 'meta.purpose of the rows: reply, summary, embedding, ...' },
  },
});

@ObjectType({ description: 'v2. Usage of one group; the keys the query did not group by are null.' })
export class TokenUsageBucket {
  @Field(() => String, { nullable: true })
  day!: string | null;

  @Field(() => String, { nullable: true })
  model!: string | null;

  @Field(() => String, { nullable: true })
  module!: string | null;

  @Field(() => ID, { nullable: true })
  visionId!: string | null;

  @Field(() => String, { nullable: true })
  purpose!: string | null;

  @Field(() => TokenUsage)
  usage!: TokenUsage;
}

/** Each group's SQL expression and the bucket field it fills, in the order buckets are sorted. */
const GROUPS: Record<UsageGroup, { sql: string; field: 'day' | 'model' | 'module' | 'visionId' | 'purpose' }> = {
  [UsageGroup.DAY]: { sql: `to_char(createdat at time zone 'UTC', 'YYYY-MM-DD')`, field: 'day' },
  [UsageGroup.MODEL]: { sql: 'model', field: 'model' },
  [UsageGroup.MODULE]: { sql: `meta ->> 'module'`, field: 'module' },
  [UsageGroup.VISION]: { sql: `meta ->> 'visionid'`, field: 'visionId' },
  [UsageGroup.PURPOSE]: { sql: `meta ->> 'purpose'`, field: 'purpose' },
};

/**
 * One client's rows within [since, until), grouped by any combination of keys, in one
 * statement over the `(clientid, createdat)` index: only the caller's rows are read. Buckets are
 * ordered by their keys in the order given (nulls last); no key: one bucket with the total.
 * `meta` keys are read as other modules wrote them: this module knows no visions, only that a
 * `visionid` may be there.
 */
export async function breakdownUsage(em: SqlRunner, opts: BreakdownRequest): Promise<TokenUsageBucket[]> {
  const { sql, params, groups } = breakdownStatement(opts);
  const rows = await queryRows(em, sql, params);
  // without a group the statement is a plain aggregate: one bucket, zero over an empty range
  return rows.map((r) => {
    const bucket: TokenUsageBucket = Object.assign(new TokenUsageBucket(), { day: null, model: null, module: null, visionId: null, purpose: null, usage: usageFromRow(r) });
    groups.forEach((g, i) => (bucket[g.field] = (r[`k${i}`] as string | null) ?? null));
    return bucket;
  });
}

export interface BreakdownRequest {
  clientId: string;
  clientType: string;
  groupBy: readonly UsageGroup[];
  since?: Date | null;
  until?: Date | null;
}

/** The statement of {@link breakdownUsage} (`?` placeholders), also for EXPLAIN in tests. */
export function breakdownStatement(opts: BreakdownRequest): { sql: string; params: unknown[]; groups: (typeof GROUPS)[UsageGroup][] } {
  const groups = [...new Set(opts.groupBy)].map((g) => GROUPS[g]);
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
  const keys = groups.map((g, i) => `${g.sql} as k${i}`);
  const positions = groups.map((_, i) => String(i + 1));
  return {
    sql: `select ${[...keys, USAGE_SUMS_SQL].join(', ')} from tokenscount where ${conds.join(' and ')}
     ${groups.length ? `group by ${positions.join(', ')} order by ${positions.map((p) => `${p} nulls last`).join(', ')}` : ''}`,
    params,
    groups,
  };
}
