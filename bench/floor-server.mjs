// The floor of scenario 3: `sendMessage`'s work with nothing of ours in between. A bare
// node:http server takes the same HTTP request (the GraphQL JSON body, read as plain JSON, no
// GraphQL), verifies the same HS256 token (node:crypto), runs the same SQL statements as
// src/vision/dialog.service.ts and src/tokenscount/call-model.ts through raw `pg` (pool of the
// same size, same transactions), streams the reply from the same fake model with node:http
// (no SDK) and answers with the same JSON shape.
//
//   1. begin; update visions … where id and owner returning status, title (ownership, status,
//      row lock); insert user message; insert STREAMING reply; commit  (sendMessage's transaction)
//   2. select the history window (last 50 eligible messages)   (loadHistory)
//   3. model call, streamed
//   4. insert into tokenscount … returning id                  (callModelAndLogTokens)
//   5. begin; update the reply (final state); bump the vision; commit   (storeFinal)
//
// Env: PORT, DATABASE_URL, JWT_SECRET, POOL_MAX, MODEL_URL (…/v1), SYSTEM_PROMPT_CHARS.
import { randomBytes } from 'node:crypto';
import { Agent, createServer, request } from 'node:http';
import pg from 'pg';
import { verifyBearer } from './lib/jwt.mjs';

const { PORT, DATABASE_URL, JWT_SECRET, MODEL_URL } = process.env;
const POOL_MAX = Number(process.env.POOL_MAX ?? 10);
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: POOL_MAX, application_name: 'bench-floor' });
const modelUrl = new URL(`${MODEL_URL}/chat/completions`);
const agent = new Agent({ keepAlive: true, maxSockets: 256 });
const SYSTEM_PROMPT =
  'You are a warm, practical coach. The person you talk to is working toward their vision: "{title}". ' +
  'Help them move toward it: ask clarifying questions, reflect what you hear, and suggest one concrete next step at a time. ' +
  'Answer in the language the person writes in. Be concise.';

/** UUIDv7 like the server's ids (time-ordered: same index locality). */
function uuidv7() {
  const b = randomBytes(16);
  const ms = BigInt(Date.now());
  b[0] = Number((ms >> 40n) & 0xffn);
  b[1] = Number((ms >> 32n) & 0xffn);
  b[2] = Number((ms >> 24n) & 0xffn);
  b[3] = Number((ms >> 16n) & 0xffn);
  b[4] = Number((ms >> 8n) & 0xffn);
  b[5] = Number(ms & 0xffn);
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const INSERT_MESSAGE = `insert into vision_messages (id, visionid, sender, messagetype, content, state, clientmessageid, replyto, heartbeatat, createdat)
  values ($1, $2, $3, 'text', $4, $5, $6, $7, $8, $9) returning id, visionid, sender, messagetype, content, state, payload, clientmessageid, replyto, heartbeatat, tokens, createdat`;

/** Streams one chat completion from the model; resolves with the text and the usage. */
function callModel(messages) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model: 'gpt-4.1', messages, stream: true, stream_options: { include_usage: true } });
    const req = request(
      modelUrl,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: 'Bearer bench', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return reject(new Error(`model answered ${res.statusCode}`));
        }
        res.setEncoding('utf8');
        let buf = '';
        let content = '';
        let usage = null;
        res.on('data', (chunk) => {
          buf += chunk;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 2);
            if (!line.startsWith('data: ')) continue;
            const data = line.slice(6);
            if (data === '[DONE]') continue;
            const ev = JSON.parse(data);
            if (ev.usage) usage = ev.usage;
            const d = ev.choices?.[0]?.delta?.content;
            if (d) content += d;
          }
        });
        res.on('end', () => resolve({ content, usage }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function inTransaction(fn) {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const out = await fn(client);
    await client.query('commit');
    return out;
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

async function sendMessage(userId, visionId, content) {
  // 1. ownership + status + lock + bump of the vision, user message, STREAMING placeholder:
  // one transaction (as src/vision/dialog.service.ts `sendMessage` / `lockActiveVision`)
  let turn;
  try {
    turn = await inTransaction(async (c) => {
      const { rows } = await c.query('update visions set updatedat = greatest(now(), updatedat) where id = $1 and userid = $2 returning status, title', [visionId, userId]);
      if (!rows[0]) throw Object.assign(new Error('not found'), { code: 'NOT_FOUND' });
      if (rows[0].status !== 'active') throw Object.assign(new Error('not active'), { code: 'VISION_NOT_ACTIVE' });
      const u = await c.query(INSERT_MESSAGE, [uuidv7(), visionId, 'user', content, 'complete', null, null, null, new Date()]);
      const r = await c.query(INSERT_MESSAGE, [uuidv7(), visionId, 'assistant', '', 'streaming', null, u.rows[0].id, new Date(), new Date()]);
      return { title: rows[0].title, user: u.rows[0], reply: r.rows[0] };
    });
  } catch (err) {
    if (err.code === 'NOT_FOUND' || err.code === 'VISION_NOT_ACTIVE') return { errors: [{ message: err.message, extensions: { code: err.code } }] };
    throw err;
  }
  const { title, user, reply } = turn;

  // 2. history window
  const { rows: history } = await pool.query(
    `select sender, content from vision_messages
     where visionid = $1 and sender in ('user', 'assistant') and messagetype <> 'info'
       and state in ('complete', 'stopped') and content <> ''
     order by createdat desc, id desc limit $2`,
    [visionId, 50],
  );
  history.reverse();

  // 3. the model, streamed
  const messages = [{ role: 'system', content: SYSTEM_PROMPT.split('{title}').join(title) }, ...history.map((m) => ({ role: m.sender, content: m.content }))];
  const result = await callModel(messages);

  // 4. one tokenscount row per call
  const usage = result.usage ?? { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
  await pool.query(
    `insert into tokenscount (clientid, clienttype, provider, model, prompttokens, completiontokens, totaltokens, rawusage, meta, createdat)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning id`,
    [
      userId,
      'user',
      'openai',
      'gpt-4.1',
      usage.prompt_tokens,
      usage.completion_tokens,
      usage.total_tokens,
      JSON.stringify(usage),
      JSON.stringify({ module: 'vision', visionid: visionId, messageid: reply.id, finish: 'complete' }),
      new Date(),
    ],
  );

  // 5. final state + vision bump: one transaction
  const final = await inTransaction(async (c) => {
    const { rows } = await c.query(
      `update vision_messages set
         content = $1,
         state = case when state = 'streaming' then $2 else state end,
         payload = case when state = 'streaming' and $3::jsonb is not null then coalesce(payload, '{}'::jsonb) || $4::jsonb else payload end,
         heartbeatat = null
       where id = $5 and state in ('streaming', 'stopped')
       returning id, visionid, sender, messagetype, content, state, payload, clientmessageid, replyto, heartbeatat, tokens, createdat`,
      [result.content, 'complete', null, null, reply.id],
    );
    await c.query('update visions set updatedat = greatest(now(), updatedat) where id = $1', [visionId]);
    return rows[0];
  });
  return {
    data: {
      sendMessage: {
        userMessage: { id: user.id },
        assistantMessage: { id: final.id, content: final.content, state: final.state.toUpperCase() },
      },
    },
  };
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = createServer((req, res) => {
  if (req.url === '/healthz') return sendJson(res, 200, { status: 'ok' });
  if (req.method !== 'POST') return sendJson(res, 404, { errors: [{ message: 'not found' }] });
  const claims = verifyBearer(JWT_SECRET, req.headers.authorization);
  if (!claims) return sendJson(res, 401, { errors: [{ message: 'Unauthorized' }] });
  const parts = [];
  req.on('data', (b) => parts.push(b));
  req.on('end', () => {
    let input;
    try {
      input = JSON.parse(Buffer.concat(parts).toString('utf8')).variables.input;
    } catch {
      return sendJson(res, 400, { errors: [{ message: 'bad request' }] });
    }
    const content = String(input.content ?? '').trim();
    if (!content || content.length > 16_000) return sendJson(res, 200, { errors: [{ message: 'bad content', extensions: { code: 'BAD_USER_INPUT' } }] });
    sendMessage(claims.sub, String(input.visionId), content).then(
      (out) => sendJson(res, 200, out),
      (err) => sendJson(res, 200, { errors: [{ message: String(err?.message ?? err), extensions: { code: 'INTERNAL_SERVER_ERROR' } }] }),
    );
  });
});
server.keepAliveTimeout = 72_000;
server.listen(Number(PORT), '127.0.0.1');

const shutdown = () => {
  server.close();
  server.closeAllConnections();
  void pool.end().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 3000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
