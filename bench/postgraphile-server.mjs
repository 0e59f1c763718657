// PostGraphile 4 serving the bench database: the peer of scenarios 1 and 2.
//
// Configured as fast as PostGraphile v4 goes in production: no GraphiQL, no query log, no
// watch mode, no mutations, no per-request transaction. Identity: a thin wrapper verifies the
// same HS256 Bearer token the server under test gets (node:crypto, cost comparable to jose)
// and overwrites the `userId` variable with the token's `sub`, so the list query can only see
// the caller's visions. PostGraphile's own JWT support is not used: it would set the claims
// with set_config() inside a begin/commit around every request (three extra round trips).
//
// Env: PORT, DATABASE_URL, JWT_SECRET, POOL_MAX.
// GET /__stats → { requests, statements }: statements counted on every pool client, so the
// harness can print PostGraphile's SQL statements per request.
import { createServer } from 'node:http';
import pg from 'pg';
import { postgraphile } from 'postgraphile';
import { verifyBearer } from './lib/jwt.mjs';

const { PORT, DATABASE_URL, JWT_SECRET } = process.env;
const POOL_MAX = Number(process.env.POOL_MAX ?? 10);

const pool = new pg.Pool({ connectionString: DATABASE_URL, max: POOL_MAX, application_name: 'postgraphile-bench' });
let statements = 0;
let requests = 0;
pool.on('connect', (client) => {
  const query = client.query;
  client.query = function countedQuery(...args) {
    statements++;
    return query.apply(this, args);
  };
});

const handler = postgraphile(pool, 'public', {
  graphqlRoute: '/graphql',
  graphiql: false,
  enhanceGraphiql: false,
  disableQueryLog: true,
  watchPg: false,
  retryOnInitFail: false,
  dynamicJson: true,
  setofFunctionsContainNulls: false,
  ignoreRBAC: false,
  legacyRelations: 'omit',
  disableDefaultMutations: true,
  enableQueryBatching: false,
  extendedErrors: [],
  showErrorStack: false,
});

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = createServer((req, res) => {
  if (req.url === '/__stats') return sendJson(res, 200, { requests, statements });
  if (req.url === '/healthz') return sendJson(res, 200, { status: 'ok' });
  if (req.method !== 'POST' || req.url !== '/graphql') return sendJson(res, 404, { errors: [{ message: 'not found' }] });
  const claims = verifyBearer(JWT_SECRET, req.headers.authorization);
  if (!claims) return sendJson(res, 401, { errors: [{ message: 'Unauthorized' }] });
  const parts = [];
  req.on('data', (b) => parts.push(b));
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(parts).toString('utf8'));
    } catch {
      return sendJson(res, 400, { errors: [{ message: 'bad JSON' }] });
    }
    if (body.variables && typeof body.variables === 'object' && 'userId' in body.variables) body.variables.userId = claims.sub;
    requests++;
    // already parsed: PostGraphile's body-parser middlewares skip a request with `_body` set
    req._body = true;
    req.body = body;
    handler(req, res);
  });
});
server.keepAliveTimeout = 72_000;

// build the schema before the harness sends traffic (introspection happens on first use otherwise)
await handler.getGraphQLSchema();
server.listen(Number(PORT), '127.0.0.1');

const shutdown = () => {
  server.close();
  server.closeAllConnections();
  void handler.release?.().finally?.(() => undefined);
  void pool.end().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 3000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
