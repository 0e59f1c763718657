// The bench's instant fake model: an OpenAI-compatible `POST /v1/chat/completions` (and
// `/v1/embeddings`, below) that answers
// every streaming request at once (no delay anywhere) with a few content chunks, a finish chunk,
// a usage chunk and `[DONE]`, in OpenAI's SSE wire format (what the official SDK parses).
//
// The first content chunk carries the moment it was written, `@<ms> ` on this process's
// `performance.now()` clock: scenario 6 runs its clients in this same process, so "first chunk
// written" and "first replyDelta received" are read on one clock with no skew.
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// `POST /v1/embeddings` answers at once with the offline responder's deterministic vectors (the
// server's own code, from dist/: texts that share words are close), `dimensions` honoured
const require = createRequire(import.meta.url);
const DIST = join(fileURLToPath(new URL('.', import.meta.url)), '../../dist/src');
let embeddingsResponse;

export const FIRST_CHUNK_RE = /^@(\d+(?:\.\d+)?) /;

const CHUNKS = ['Keep ', 'going: ', 'one small step today.'];
const USAGE = { prompt_tokens: 120, completion_tokens: 8, total_tokens: 128 };

export async function startFakeModel() {
  let requests = 0;
  let counter = 0;
  const observers = new Set();
  const embeddingObservers = new Set();
  const server = createServer((req, res) => {
    const headAt = performance.now();
    const parts = [];
    req.on('data', (b) => parts.push(b));
    req.on('error', () => {});
    res.on('error', () => {});
    req.on('end', () => {
      const bodyAt = performance.now();
      requests++;
      const path = (req.url ?? '').split('?')[0];
      if (req.method === 'POST' && path.endsWith('/embeddings')) {
        embeddingsResponse ??= require(join(DIST, 'llm/offline-responder.js')).embeddingsResponse;
        let body;
        let out;
        try {
          body = JSON.parse(Buffer.concat(parts).toString('utf8'));
          out = JSON.stringify(embeddingsResponse(body));
        } catch {
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end('{"error":{"message":"bad json","type":"invalid_request_error"}}');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(out);
        if (embeddingObservers.size) {
          const answeredAt = performance.now();
          for (const fn of embeddingObservers) fn({ headAt, bodyAt, answeredAt, body });
        }
        return;
      }
      if (req.method !== 'POST' || !path.endsWith('/chat/completions')) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"error":{"message":"not found","type":"invalid_request_error"}}');
        return;
      }
      let body;
      try {
        body = JSON.parse(Buffer.concat(parts).toString('utf8'));
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end('{"error":{"message":"bad json","type":"invalid_request_error"}}');
        return;
      }
      for (const fn of observers) fn({ headAt, bodyAt, body });
      const id = `chatcmpl-bench-${++counter}`;
      const base = { id, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: body.model ?? 'bench', usage: null };
      const includeUsage = body.stream_options?.include_usage === true;
      if (body.stream !== true) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            id,
            object: 'chat.completion',
            created: base.created,
            model: base.model,
            choices: [{ index: 0, message: { role: 'assistant', content: CHUNKS.join('') }, finish_reason: 'stop' }],
            usage: USAGE,
          }),
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      const ev = (data) => `data: ${JSON.stringify(data)}\n\n`;
      const first = `@${performance.now().toFixed(3)} `;
      res.write(ev({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: first }, logprobs: null, finish_reason: null }] }));
      let rest = '';
      for (const c of CHUNKS) rest += ev({ ...base, choices: [{ index: 0, delta: { content: c }, logprobs: null, finish_reason: null }] });
      rest += ev({ ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }] });
      if (includeUsage) rest += ev({ ...base, choices: [], usage: USAGE });
      rest += 'data: [DONE]\n\n';
      res.end(rest);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    port,
    get requests() {
      return requests;
    },
    /** Calls `fn({ headAt, bodyAt, body })` for each chat request; returns the function that stops it. */
    observe(fn) {
      observers.add(fn);
      return () => observers.delete(fn);
    },
    /**
     * Calls `fn({ headAt, bodyAt, answeredAt, body })` for each embeddings request, after its
     * answer is handed to the socket (`answeredAt`); returns the function that stops it.
     */
    observeEmbeddings(fn) {
      embeddingObservers.add(fn);
      return () => embeddingObservers.delete(fn);
    },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
