/**
 * Usage breakdowns (issue 14, part 1): `tokenUsageBreakdown` against sums computed here from the
 * rows, for every combination of groups; `since`/`until` edges; other users' rows never counted
 * and never read (EXPLAIN on 100,000 rows); `estimatedCalls`. Real server and PostgreSQL.
 */
import 'reflect-metadata';
import { breakdownStatement, UsageGroup } from '../src/tokenscount/usage-breakdown';
import { createScratchDatabase } from './support/db';
import { errorCode, newUser, startTestServer, type TestServer } from './support/server';

let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let server: TestServer;
const me = newUser('usage');
const other = newUser('usage-other');

const QUERY = `query B($g: [UsageGroup!]!, $since: DateTimeISO, $until: DateTimeISO) {
  tokenUsageBreakdown(groupBy: $g, since: $since, until: $until) {
    day model module visionId purpose usage { calls promptTokens completionTokens totalTokens estimatedCalls }
  }
}`;

type Row = { createdat: string; model: string; module: string | null; visionid: string | null; purpose: string | null; prompttokens: number; completiontokens: number; totaltokens: number; estimated: boolean };

beforeAll(async () => {
  scratch = await createScratchDatabase('vp_usage');
  server = await startTestServer({ DATABASE_URL: scratch.url });
  // 100,000 rows of 50 other users, then 400 of mine and 100 of one more user in the same days
  await server.sql(
    `insert into tokenscount (clientid, clienttype, provider, model, prompttokens, completiontokens, totaltokens, meta, createdat)
     select 'someone-' || (g % 50), 'user', 'openai', 'model-a', 10, 5, 15, '{"module":"vision","purpose":"reply"}', timestamptz '2026-03-01' + g * interval '7 seconds'
     from generate_series(1, 100000) g`,
  );
  for (const [who, n] of [[me, 400], [other, 100]] as const) {
    await server.sql(
      `insert into tokenscount (clientid, clienttype, provider, model, prompttokens, completiontokens, totaltokens, meta, createdat)
       select ?, 'user', 'openai', (array['model-a','model-b','model-c'])[1 + g % 3], g, g % 7, g + g % 7,
         jsonb_strip_nulls(jsonb_build_object(
           'module', (array['vision','search',null])[1 + (g / 3) % 3],
           'visionid', case when g % 5 = 0 then null else (array['0195a5a0-0000-7000-8000-000000000001','0195a5a0-0000-7000-8000-000000000002'])[1 + g % 2] end,
           'purpose', (array['reply','summary','embedding'])[1 + (g / 2) % 3],
           'estimated', case when g % 11 = 0 then true end)),
         timestamptz '2026-03-01 22:00+00' + g * interval '17 minutes'
       from generate_series(1, ?) g`,
      [who, n],
    );
  }
  await server.sql('analyze tokenscount');
});

afterAll(async () => {
  await server?.stop();
  await scratch?.drop();
});

async function myRows(): Promise<Row[]> {
  return server.sql<Row>(
    `select to_char(createdat at time zone 'UTC', 'YYYY-MM-DD') as day, to_json(createdat) #>> '{}' as createdat, model, meta->>'module' as module, meta->>'visionid' as visionid,
       meta->>'purpose' as purpose, prompttokens, completiontokens, totaltokens, coalesce((meta->>'estimated')::boolean, false) as estimated
     from tokenscount where clientid = ?`,
    [me],
  );
}

const FIELD = { DAY: 'day', MODEL: 'model', MODULE: 'module', VISION: 'visionId', PURPOSE: 'purpose' } as const;
const valueOf = (r: any, g: UsageGroup): string | null => (g === UsageGroup.VISION ? r.visionid : r[FIELD[g]]) ?? null;

/** The buckets as this test computes them from the rows, ordered by the keys in the order given, nulls last. */
function expected(rows: any[], groups: UsageGroup[]): any[] {
  const byKey = new Map<string, any>();
  for (const r of rows) {
    const keys = groups.map((g) => valueOf(r, g));
    const k = JSON.stringify(keys);
    const b = byKey.get(k) ?? { keys, usage: { calls: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, estimatedCalls: 0 } };
    b.usage.calls++;
    b.usage.promptTokens += r.prompttokens;
    b.usage.completionTokens += r.completiontokens;
    b.usage.totalTokens += r.totaltokens;
    if (r.estimated) b.usage.estimatedCalls++;
    byKey.set(k, b);
  }
  const cmp = (a: string | null, b: string | null) => (a === b ? 0 : a === null ? 1 : b === null ? -1 : a < b ? -1 : 1);
  return [...byKey.values()]
    .sort((x, y) => x.keys.reduce((c: number, _: unknown, i: number) => c || cmp(x.keys[i], y.keys[i]), 0))
    .map((b) => {
      const bucket: any = { day: null, model: null, module: null, visionId: null, purpose: null, usage: b.usage };
      groups.forEach((g, i) => (bucket[FIELD[g]] = b.keys[i]));
      return bucket;
    });
}

function combinations(): UsageGroup[][] {
  const all = Object.values(UsageGroup);
  const out: UsageGroup[][] = [];
  for (let mask = 0; mask < 1 << all.length; mask++) out.push(all.filter((_, i) => mask & (1 << i)));
  return out;
}

describe('tokenUsageBreakdown', () => {
  test('every combination of groups equals the sums of my rows, in key order; nobody else is counted', async () => {
    const rows = await myRows();
    expect(rows).toHaveLength(400);
    const combos = combinations();
    expect(combos).toHaveLength(32);
    for (const g of combos) {
      const r = await server.gql<any, any>(QUERY, { g }, { user: me });
      expect(r.errors).toBeUndefined();
      const want = g.length ? expected(rows, g) : [{ day: null, model: null, module: null, visionId: null, purpose: null, usage: expected(rows, [])[0].usage }];
      expect(r.data.tokenUsageBreakdown).toEqual(want);
    }
    // the order given is the sort order
    const r = await server.gql<any, any>(QUERY, { g: ['PURPOSE', 'MODEL'] }, { user: me });
    expect(r.data.tokenUsageBreakdown).toEqual(expected(rows, [UsageGroup.PURPOSE, UsageGroup.MODEL]));
    expect(r.data.tokenUsageBreakdown.some((b: any) => b.usage.estimatedCalls > 0)).toBe(true);
  });

  test('since is inclusive and until exclusive; an empty range is one zero bucket without groups', async () => {
    const rows = await myRows();
    const times = rows.map((r) => r.createdat).sort();
    const since = new Date(times[100]!);
    const until = new Date(times[300]!);
    const inRange = rows.filter((r) => new Date(r.createdat) >= since && new Date(r.createdat) < until);
    expect(inRange).toHaveLength(200);
    const r = await server.gql<any, any>(QUERY, { g: ['DAY'], since: since.toISOString(), until: until.toISOString() }, { user: me });
    expect(r.data.tokenUsageBreakdown).toEqual(expected(inRange, [UsageGroup.DAY]));

    const empty = await server.gql<any, any>(QUERY, { g: [], since: '2020-01-01T00:00:00Z', until: '2020-01-02T00:00:00Z' }, { user: me });
    expect(empty.data.tokenUsageBreakdown).toEqual([{ day: null, model: null, module: null, visionId: null, purpose: null, usage: { calls: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, estimatedCalls: 0 } }]);
    const grouped = await server.gql<any, any>(QUERY, { g: ['MODEL'], since: '2020-01-01T00:00:00Z', until: '2020-01-02T00:00:00Z' }, { user: me });
    expect(grouped.data.tokenUsageBreakdown).toEqual([]);
  });

  test('bad input is BAD_USER_INPUT (HTTP 400 for an unknown group), never a 5xx; no identity is UNAUTHENTICATED', async () => {
    const backwards = await server.gql<any, any>(QUERY, { g: ['DAY'], since: '2026-03-05T00:00:00Z', until: '2026-03-01T00:00:00Z' }, { user: me });
    expect(errorCode(backwards)).toBe('BAD_USER_INPUT');
    const unknown = await server.gql<any, any>(QUERY, { g: ['HOUR'] }, { user: me });
    expect(unknown.status).toBe(400);
    expect(errorCode(unknown)).toBe('BAD_USER_INPUT');
    const anonymous = await server.gql<any, any>(QUERY, { g: ['DAY'] });
    expect(errorCode(anonymous)).toBe('UNAUTHENTICATED');
    // a group named twice counts once
    const twice = await server.gql<any, any>(QUERY, { g: ['MODEL', 'MODEL'] }, { user: me });
    expect(twice.data.tokenUsageBreakdown).toEqual(expected(await myRows(), [UsageGroup.MODEL]));
  });

  test('the statement reads only the caller\'s rows through the (clientid, createdat) index', async () => {
    for (const groupBy of [[], [UsageGroup.DAY, UsageGroup.VISION, UsageGroup.PURPOSE]]) {
      const { sql, params } = breakdownStatement({ clientId: me, clientType: 'user', groupBy, since: new Date('2026-03-01T00:00:00Z'), until: new Date('2026-04-01T00:00:00Z') });
      const [plan] = await server.sql<any>(`explain (analyze, format json) ${sql}`, params);
      const text = JSON.stringify(plan['QUERY PLAN']);
      expect(text).not.toContain('Seq Scan');
      expect(text).toContain('tokenscount_clientid_createdat_idx');
      // the scan hands on exactly my 400 rows
      const scans: any[] = [];
      const walk = (n: any) => {
        if (n['Relation Name'] === 'tokenscount') scans.push(n);
        for (const c of n.Plans ?? []) walk(c);
      };
      walk(plan['QUERY PLAN'][0].Plan);
      expect(scans.map((s) => s['Actual Rows'])).toEqual([400]);
    }
  });
});
