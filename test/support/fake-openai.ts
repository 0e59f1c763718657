import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { embeddingsResponse } from '../../src/llm/offline-responder';

/**
 * A fake OpenAI-compatible Chat Completions (and embeddings) server for tests.
 *
 * Started on loopback with `startFakeOpenAI()`, it speaks OpenAI's real wire format (JSON and
 * SSE) so the official `openai` SDK can be driven through real HTTP. Each request consumes one
 * queued `Behaviour` (or the default one), which decides what the reply looks like.
 */

/** Token usage as reported by OpenAI. */
export type Usage = { prompt_tokens: number; completion_tokens: number; total_tokens: number; prompt_tokens_details?: { cached_tokens: number } };

/** What the server does with one request. */
export type Behaviour =
  /**
   * A normal reply; as SSE when the request has `stream: true`, else as one chat.completion JSON.
   * - `usage` undefined: `{ prompt_tokens: 10, completion_tokens: chunks.length, total_tokens: 10 + chunks.length }`;
   *   `null`: no usage at all (no usage chunk even if `stream_options.include_usage` was requested).
   * - `firstByteDelayMs`: delay after the headers, before the first content chunk.
   * - `chunkDelayMs`: delay between content chunks.
   * - `hold`: after the first chunk is written, the rest waits for this promise (act mid-reply).
   *   Non-streaming: the whole reply waits for `firstByteDelayMs`, then for `hold`.
   * - `finishReason`: of the finish chunk, default `'stop'`; `null`: no finish chunk at all (the
   *   stream still ends cleanly, with usage and `[DONE]`), as a proxy that cut a reply would.
   * - `done`: false to end the body without `data: [DONE]` (clean end of file).
   */
  | {
      kind: 'stream';
      chunks: string[];
      usage?: Usage | null;
      firstByteDelayMs?: number;
      chunkDelayMs?: number;
      hold?: Promise<void>;
      finishReason?: 'stop' | 'length' | 'content_filter' | 'tool_calls' | null;
      done?: boolean;
      /**
       * After the content chunks, a function call streamed as a model does: the first piece
       * names it, the arguments follow in these pieces (`chunkDelayMs` apart; with no content
       * chunks, `hold` applies after the first piece). The finish reason then defaults to `tool_calls`.
       */
      toolCall?: { name?: string; id?: string; argumentChunks: string[] };
    }
  /**
   * An HTTP error (e.g. 429 with `{ 'retry-after': '1' }`, 500, 503). `body` defaults to an
   * OpenAI-like `{ error: { message, type, code } }`; a string body is sent as is.
   */
  | { kind: 'status'; status: number; body?: unknown; headers?: Record<string, string> }
  /** SSE: writes these content chunks, then destroys the socket mid-stream (no finish chunk, no [DONE]). */
  | { kind: 'cut'; chunks: string[] }
  /** SSE: writes these content chunks, then `data: {this is not json` and ends the response. */
  | { kind: 'malformed'; chunks: string[] }
  /** Sends the headers and never any data; ends when the client aborts or the server closes. */
  | { kind: 'hang' };

/** One request as the fake received it. */
export interface RecordedRequest {
  method: string;
  /** Path without the query string, e.g. `/v1/chat/completions`. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body (the raw text if it was not JSON, `undefined` if empty). */
  body: any;
  /** `Date.now()` when the body had been read. */
  receivedAt: number;
  /** True when the client closed the connection before the response had finished. */
  aborted: boolean;
}

/** Handle on a running fake server. */
export interface FakeOpenAI {
  /** e.g. http://127.0.0.1:PORT/v1 (pass as baseURL to the openai SDK) */
  baseURL: string;
  /** Every request received (including 404s), in arrival order. */
  requests: RecordedRequest[];
  /** Behaviours used one per request, in order; when the queue is empty, `defaultBehaviour` is used. */
  enqueue(...b: Behaviour[]): void;
  /** Used when the queue is empty; initially `{ kind: 'stream', chunks: ['Hello', ' from', ' the', ' coach.'] }`. */
  defaultBehaviour: Behaviour;
  /**
   * Awaited for each chat request after it is recorded and before any byte of the answer is
   * written (e.g. to look at the database at the moment the request arrives). A throw drops the
   * connection. Cleared by `reset()`.
   */
  onRequest?: (r: RecordedRequest) => void | Promise<void>;
  /**
   * Chooses the behaviour for a request before the queue is looked at (e.g. by its system
   * prompt: summaries and replies arrive in any order); `undefined` falls back to the queue.
   */
  route?: (r: RecordedRequest) => Behaviour | undefined;
  /** Clears the queue, the recorded requests and `onRequest`, restores the initial default behaviour. */
  reset(): void;
  /** Resolves when `n` requests have been received in total (use to sync tests). Default timeout 5000 ms. */
  waitForRequests(n: number, timeoutMs?: number): Promise<void>;
  /**
   * Requests to `/embeddings`, recorded apart from `requests` (chat), so counting chat calls is
   * not disturbed by background embedding jobs.
   */
  embeddingRequests: RecordedRequest[];
  /**
   * What every embeddings request gets while set (`status`, `hang`, `cut`, `malformed`); unset
   * (the default, also after `reset()`): deterministic vectors from src/llm/offline-embeddings.ts
   * with usage, `dimensions` honoured.
   */
  embeddingBehaviour?: Behaviour;
  /** Closes the server, destroys open sockets and clears all timers. */
  close(): Promise<void>;
}

const initialBehaviour = (): Behaviour => ({ kind: 'stream', chunks: ['Hello', ' from', ' the', ' coach.'] });

const CHAT_PATHS = new Set(['/v1/chat/completions', '/chat/completions']);
const EMBEDDING_PATHS = new Set(['/v1/embeddings', '/embeddings']);

const errorDefaults: Record<number, { message: string; type: string; code: string | null }> = {
  400: { message: 'Invalid request.', type: 'invalid_request_error', code: null },
  401: { message: 'Incorrect API key provided.', type: 'invalid_request_error', code: 'invalid_api_key' },
  403: { message: 'You are not allowed to sample from this model.', type: 'invalid_request_error', code: null },
  404: { message: 'Not found.', type: 'invalid_request_error', code: null },
  429: { message: 'Rate limit reached for requests.', type: 'requests', code: 'rate_limit_exceeded' },
  500: { message: 'The server had an error while processing your request.', type: 'server_error', code: null },
  503: { message: 'The engine is currently overloaded, please try again later.', type: 'server_error', code: null },
};

function defaultErrorBody(status: number): unknown {
  const d = errorDefaults[status] ?? { message: `Fake error ${status}.`, type: status >= 500 ? 'server_error' : 'invalid_request_error', code: null };
  return { error: { message: d.message, type: d.type, param: null, code: d.code } };
}

class FakeOpenAIServer implements FakeOpenAI {
  baseURL = '';
  requests: RecordedRequest[] = [];
  embeddingRequests: RecordedRequest[] = [];
  embeddingBehaviour?: Behaviour;
  defaultBehaviour: Behaviour = initialBehaviour();
  onRequest?: (r: RecordedRequest) => void | Promise<void>;
  route?: (r: RecordedRequest) => Behaviour | undefined;

  private queue: Behaviour[] = [];
  private sockets = new Set<Socket>();
  /** Pending delays: clearing one must also settle whoever awaits it. */
  private timers = new Map<NodeJS.Timeout, () => void>();
  private waiters = new Set<{ n: number; resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private closed = false;
  private closedPromise: Promise<void>;
  private signalClosed!: () => void;
  private counter = 0;

  constructor(private server: Server) {
    this.closedPromise = new Promise<void>((resolve) => (this.signalClosed = resolve));
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.handle(req, res).catch(() => {
        // never throw from the handler: whatever went wrong, drop the connection
        if (!res.destroyed) res.destroy();
      });
    });
  }

  enqueue(...b: Behaviour[]): void {
    this.queue.push(...b);
  }

  reset(): void {
    this.queue = [];
    this.requests = [];
    this.embeddingRequests = [];
    this.embeddingBehaviour = undefined;
    this.defaultBehaviour = initialBehaviour();
    this.onRequest = undefined;
    this.route = undefined;
  }

  waitForRequests(n: number, timeoutMs = 5000): Promise<void> {
    if (this.requests.length >= n) return Promise.resolve();
    if (this.closed) return Promise.reject(new Error('fake OpenAI server is closed'));
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        n,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(new Error(`waitForRequests(${n}) timed out after ${timeoutMs} ms with ${this.requests.length} request(s)`));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.signalClosed();
    for (const [timer, settle] of this.timers) {
      clearTimeout(timer);
      settle();
    }
    this.timers.clear();
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new Error('fake OpenAI server closed'));
    }
    this.waiters.clear();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** setTimeout that is cleared (and resolved) by close(). */
  private sleep(ms: number | undefined): Promise<void> {
    if (!ms || ms <= 0 || this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, ms);
      this.timers.set(timer, resolve);
    });
  }

  private record(r: RecordedRequest): void {
    this.requests.push(r);
    const count = this.requests.length;
    for (const w of this.waiters) {
      if (count >= w.n) {
        clearTimeout(w.timer);
        this.waiters.delete(w);
        w.resolve();
      }
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.on('error', () => {});
    req.on('error', () => {});
    let serverEnded = false; // set when the server itself cuts the connection (not a client abort)
    let rec: RecordedRequest | undefined;
    res.on('close', () => {
      if (rec && !res.writableFinished && !serverEnded && !this.closed) rec.aborted = true;
    });

    const raw = await readBody(req);
    if (raw === undefined) return; // client went away while sending the body
    let body: any = undefined;
    let badJson = false;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
        badJson = true;
      }
    }
    const path = (req.url ?? '/').split('?')[0]!;
    rec = { method: req.method ?? '', path, headers: { ...req.headers }, body, receivedAt: Date.now(), aborted: false };
    if (req.method === 'POST' && EMBEDDING_PATHS.has(path)) {
      this.embeddingRequests.push(rec);
      return this.embeddings(res, body, badJson);
    }
    if (res.destroyed) rec.aborted = true;
    this.record(rec);
    if (res.destroyed) return;

    const n = ++this.counter;
    res.setHeader('x-request-id', `req_fake_${n}`);
    if (req.method !== 'POST' || !CHAT_PATHS.has(path)) {
      return sendJson(res, 404, { error: { message: `Unknown request URL: ${req.method} ${path}.`, type: 'invalid_request_error', param: null, code: 'unknown_url' } });
    }
    if (badJson || typeof body !== 'object' || body === null) {
      return sendJson(res, 400, { error: { message: 'We could not parse the JSON body of your request.', type: 'invalid_request_error', param: null, code: null } });
    }

    const behaviour = this.route?.(rec) ?? (this.queue.length > 0 ? this.queue.shift()! : this.defaultBehaviour);
    if (this.onRequest) await this.onRequest(rec);
    const ctx: ReplyContext = {
      id: `chatcmpl-fake-${n}`,
      created: Math.floor(Date.now() / 1000),
      model: typeof body.model === 'string' ? body.model : 'fake-model',
      includeUsage: body.stream_options?.include_usage === true,
    };
    const stream = body.stream === true;

    switch (behaviour.kind) {
      case 'status': {
        const payload = behaviour.body === undefined ? defaultErrorBody(behaviour.status) : behaviour.body;
        const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
        res.writeHead(behaviour.status, { 'content-type': 'application/json', ...behaviour.headers });
        res.end(text);
        return;
      }
      case 'hang': {
        res.writeHead(200, stream ? sseHeaders : { 'content-type': 'application/json' });
        res.flushHeaders();
        return; // the response stays open until the client aborts or close() destroys the socket
      }
      case 'stream':
        if (!stream) return this.completion(res, ctx, behaviour);
        return this.sse(res, ctx, behaviour);
      case 'cut': {
        if (!stream) res.writeHead(200, { 'content-type': 'application/json' });
        else res.writeHead(200, sseHeaders);
        res.flushHeaders();
        let last: Promise<void> = Promise.resolve();
        if (stream) behaviour.chunks.forEach((c, i) => (last = write(res, event(contentChunk(ctx, c, i === 0)))));
        else last = write(res, '{"id":"' + ctx.id + '","object":"chat.comp');
        await last; // let the written bytes reach the kernel before cutting
        serverEnded = true;
        res.socket?.destroy();
        res.destroy();
        return;
      }
      case 'malformed': {
        if (!stream) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{this is not json');
          return;
        }
        res.writeHead(200, sseHeaders);
        res.flushHeaders();
        behaviour.chunks.forEach((c, i) => void write(res, event(contentChunk(ctx, c, i === 0))));
        void write(res, 'data: {this is not json\n\n');
        safeEnd(res);
        return;
      }
    }
  }

  private async embeddings(res: ServerResponse, body: any, badJson: boolean): Promise<void> {
    if (badJson || typeof body !== 'object' || body === null) {
      return sendJson(res, 400, { error: { message: 'We could not parse the JSON body of your request.', type: 'invalid_request_error', param: null, code: null } });
    }
    const b = this.embeddingBehaviour;
    if (!b || b.kind === 'stream') {
      await this.sleep(b?.firstByteDelayMs);
      return sendJson(res, 200, embeddingsResponse(body));
    }
    if (b.kind === 'status') {
      const payload = b.body === undefined ? defaultErrorBody(b.status) : b.body;
      res.writeHead(b.status, { 'content-type': 'application/json', ...b.headers });
      res.end(typeof payload === 'string' ? payload : JSON.stringify(payload));
      return;
    }
    if (b.kind === 'hang') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      return;
    }
    if (b.kind === 'malformed') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{this is not json');
      return;
    }
    res.socket?.destroy();
    res.destroy();
  }

  private async sse(res: ServerResponse, ctx: ReplyContext, b: Extract<Behaviour, { kind: 'stream' }>): Promise<void> {
    res.writeHead(200, sseHeaders);
    res.flushHeaders();
    await this.sleep(b.firstByteDelayMs);
    for (let i = 0; i < b.chunks.length; i++) {
      if (i > 0) await this.sleep(b.chunkDelayMs);
      if (!writable(res)) return;
      void write(res, event(contentChunk(ctx, b.chunks[i], i === 0)));
      if (i === 0 && b.hold) await Promise.race([b.hold, this.closedPromise]);
    }
    if (b.toolCall) {
      const t = b.toolCall;
      const head = { index: 0, id: t.id ?? `call_fake_${ctx.id.slice(-4)}`, type: 'function', function: { name: t.name ?? 'create_document', arguments: '' } };
      void write(res, event({ ...chunkBase(ctx), choices: [{ index: 0, delta: { ...(b.chunks.length ? {} : { role: 'assistant', content: null }), tool_calls: [head] }, logprobs: null, finish_reason: null }] }));
      for (let i = 0; i < t.argumentChunks.length; i++) {
        if (i > 0 || b.chunks.length > 0) await this.sleep(b.chunkDelayMs);
        if (!writable(res)) return;
        void write(res, event({ ...chunkBase(ctx), choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: t.argumentChunks[i] } }] }, logprobs: null, finish_reason: null }] }));
        if (i === 0 && b.chunks.length === 0 && b.hold) await Promise.race([b.hold, this.closedPromise]);
      }
    }
    if (b.chunks.length === 0 && b.hold) await Promise.race([b.hold, this.closedPromise]);
    if (!writable(res)) return;
    const finishReason = b.finishReason === undefined ? (b.toolCall ? 'tool_calls' : 'stop') : b.finishReason;
    if (finishReason !== null) void write(res, event({ ...chunkBase(ctx), choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: finishReason }] }));
    const usage = usageOf(b);
    if (ctx.includeUsage && usage !== null) void write(res, event({ ...chunkBase(ctx), choices: [], usage }));
    if (b.done !== false) void write(res, 'data: [DONE]\n\n');
    safeEnd(res);
  }

  private async completion(res: ServerResponse, ctx: ReplyContext, b: Extract<Behaviour, { kind: 'stream' }>): Promise<void> {
    await this.sleep(b.firstByteDelayMs);
    if (b.hold) await Promise.race([b.hold, this.closedPromise]);
    if (!writable(res)) return;
    const usage = usageOf(b);
    sendJson(res, 200, {
      id: ctx.id,
      object: 'chat.completion',
      created: ctx.created,
      model: ctx.model,
      choices: [{ index: 0, message: { role: 'assistant', content: b.chunks.join(''), refusal: null }, logprobs: null, finish_reason: b.finishReason === undefined ? 'stop' : b.finishReason }],
      ...(usage === null ? {} : { usage }),
    });
  }
}

interface ReplyContext {
  id: string;
  created: number;
  model: string;
  includeUsage: boolean;
}

const sseHeaders = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' };

function usageOf(b: Extract<Behaviour, { kind: 'stream' }>): Usage | null {
  if (b.usage === null) return null;
  return b.usage ?? { prompt_tokens: 10, completion_tokens: b.chunks.length, total_tokens: 10 + b.chunks.length };
}

function chunkBase(ctx: ReplyContext) {
  // like OpenAI: with include_usage, every chunk carries `usage: null` except the final usage chunk
  return { id: ctx.id, object: 'chat.completion.chunk', created: ctx.created, model: ctx.model, ...(ctx.includeUsage ? { usage: null } : {}) };
}

function contentChunk(ctx: ReplyContext, content: string, first: boolean) {
  const delta = first ? { role: 'assistant', content } : { content };
  return { ...chunkBase(ctx), choices: [{ index: 0, delta, logprobs: null, finish_reason: null }] };
}

function event(data: unknown): string {
  return `data: ${JSON.stringify(data)}\n\n`;
}

function writable(res: ServerResponse): boolean {
  return !res.destroyed && !res.writableEnded;
}

/** Writes if the client is still there; resolves once the data is handed to the OS (or dropped). */
function write(res: ServerResponse, text: string): Promise<void> {
  if (!writable(res)) return Promise.resolve();
  return new Promise<void>((resolve) => {
    try {
      res.write(text, () => resolve());
    } catch {
      resolve();
    }
  });
}

function safeEnd(res: ServerResponse): void {
  if (!writable(res)) return;
  try {
    res.end();
  } catch {
    // client already gone
  }
}

function sendJson(res: ServerResponse, status: number, payload: unknown): void {
  if (!writable(res)) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(payload));
}

/** Reads the whole body as UTF-8; `undefined` when the client aborted before it was complete. */
function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let done = false;
    const finish = (v: string | undefined) => {
      if (!done) {
        done = true;
        resolve(v);
      }
    };
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', () => finish(Buffer.concat(parts).toString('utf8')));
    req.on('error', () => finish(undefined));
    req.on('close', () => finish(req.complete ? Buffer.concat(parts).toString('utf8') : undefined));
  });
}

/** Starts a fake OpenAI server on 127.0.0.1 with a free port. */
export async function startFakeOpenAI(): Promise<FakeOpenAI> {
  const server = createServer();
  const fake = new FakeOpenAIServer(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  fake.baseURL = `http://127.0.0.1:${port}/v1`;
  return fake;
}

/** Splits text into chunks of about `size` characters (default 5) without losing characters. */
export function chunk(text: string, size = 5): string[] {
  if (!Number.isFinite(size) || size < 1) throw new RangeError(`chunk size must be >= 1, got ${size}`);
  const chars = Array.from(text); // code points: never split a surrogate pair
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += Math.floor(size)) out.push(chars.slice(i, i + Math.floor(size)).join(''));
  return out;
}
