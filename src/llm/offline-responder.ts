import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { countTokens, decode, encode, encodeChat } from 'gpt-tokenizer';
import { offlineDocumentArguments, wantsOfflineDocument } from './offline-document';
import { offlineEmbedding, offlineEmbeddingTokens } from './offline-embeddings';

/**
 * A small OpenAI-compatible Chat Completions (and embeddings) endpoint on loopback, used when no OPENAI_API_KEY
 * is configured outside production. The normal SDK code path talks to it: it streams a
 * deterministic reply and reports usage, so the whole dialog, token accounting included, works
 * on a machine with no network.
 */
export interface OfflineResponder {
  baseURL: string;
  close(): Promise<void>;
}

type ChatMessage = { role: string; content: unknown };

function lastUserText(messages: ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role === 'user' && typeof m.content === 'string') return m.content;
  }
  return '';
}

/** How a request for a rolling summary begins (`memory/summarizer.ts`): the offline responder summarises it. */
export const SUMMARY_PROMPT_MARKER = 'You maintain the running summary';

/**
 * Deterministic summary: the previous one, then the first words of each new message of the
 * person, so that what was said stays findable; the caller's `max_tokens` bounds it.
 */
export function offlineSummary(messages: ChatMessage[]): string {
  const input = lastUserText(messages);
  const [prevPart = '', newPart = ''] = input.split(/\n\nNew messages, oldest first:\n\n/);
  const previous = prevPart.replace(/^Previous summary:\n/, '').trim();
  const points = newPart
    .split(/\n\n(?=(?:Person|Coach): )/)
    .filter((l) => l.startsWith('Person: '))
    .map((l) => l.slice('Person: '.length).trim().split(/\s+/).slice(0, 12).join(' '));
  const start = previous.startsWith('(none yet') ? '(offline summary) The person said:' : previous;
  return [start, ...points.map((p) => `- ${p}`)].join('\n');
}

/** Deterministic coach reply: the same history always gives the same text. */
export function offlineReply(messages: ChatMessage[]): string {
  const text = lastUserText(messages).trim().replace(/\s+/g, ' ');
  const quote = text.length > 120 ? `${text.slice(0, 117)}...` : text;
  const turns = messages.filter((m) => m.role === 'user').length;
  if (/[а-яё]/i.test(text)) {
    return `(офлайн-ответ, модель не подключена) Вы написали: «${quote}». Это ваш шаг №${turns} на пути. Какой один небольшой шаг к визии вы можете сделать сегодня?`;
  }
  return `(offline reply, no model connected) You wrote: "${quote}". This is step ${turns} of your path. What is one small step toward your vision you can take today?`;
}

function promptTokens(messages: ChatMessage[]): number {
  try {
    return encodeChat(messages.map((m) => ({ role: m.role as 'user', content: String(m.content ?? '') }))).length;
  } catch {
    return countTokens(messages.map((m) => String(m.content ?? '')).join('\n'));
  }
}

async function readJson(req: IncomingMessage): Promise<Record<string, any>> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 10 * 1024 * 1024) throw new Error('request too large');
    parts.push(c as Buffer);
  }
  return JSON.parse(Buffer.concat(parts).toString('utf8'));
}

/** The embeddings endpoint: deterministic vectors (offline-embeddings.ts), `dimensions` honoured. */
export function embeddingsResponse(body: Record<string, any>): Record<string, unknown> {
  const input: string[] = Array.isArray(body.input) ? body.input.map(String) : [String(body.input ?? '')];
  const dims = Number(body.dimensions) > 0 ? Number(body.dimensions) : 256;
  const tokens = input.reduce((n, t) => n + offlineEmbeddingTokens(t), 0);
  return {
    object: 'list',
    model: String(body.model ?? 'offline-embedding'),
    data: input.map((t, index) => ({ object: 'embedding', index, embedding: offlineEmbedding(t, dims) })),
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method === 'POST' && /\/embeddings$/.test(req.url ?? '')) {
    const body = await readJson(req);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(embeddingsResponse(body)));
    return;
  }
  if (req.method !== 'POST' || !/\/chat\/completions$/.test(req.url ?? '')) {
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'not found' } }));
    return;
  }
  const body = await readJson(req);
  const messages: ChatMessage[] = Array.isArray(body.messages) ? body.messages : [];
  const first = messages[0];
  const summary = first?.role === 'system' && typeof first.content === 'string' && first.content.startsWith(SUMMARY_PROMPT_MARKER);
  if (!summary && body.stream && wantsOfflineDocument(body)) return streamToolCall(res, body, messages);
  let text = summary ? offlineSummary(messages) : offlineReply(messages);
  let finish = 'stop';
  const maxTokens = Number(body.max_tokens ?? body.max_completion_tokens ?? 0);
  if (maxTokens > 0 && countTokens(text) > maxTokens) {
    // like a real model at its limit: the text is cut and the finish says so
    text = decode(encode(text).slice(0, maxTokens)).replace(/\uFFFD+$/, '');
    finish = 'length';
  }
  const prompt = promptTokens(messages);
  const completion = countTokens(text);
  const usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  const id = `chatcmpl-offline-${Date.now().toString(36)}`;
  const created = Math.floor(Date.now() / 1000);
  const model = String(body.model ?? 'offline');
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id, object: 'chat.completion', created, model, choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: finish }], usage }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const send = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
  const words = text.match(/\S+\s*/g) ?? [];
  words.forEach((w, i) =>
    send({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', content: w } : { content: w }, finish_reason: null }] }),
  );
  send({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta: {}, finish_reason: finish }] });
  if (body.stream_options?.include_usage) send({ id, object: 'chat.completion.chunk', created, model, choices: [], usage });
  res.end('data: [DONE]\n\n');
}

/** Streams a `create_document` call, its arguments in pieces as a real model sends them. */
function streamToolCall(res: ServerResponse, body: Record<string, any>, messages: ChatMessage[]): void {
  const args = offlineDocumentArguments(messages);
  const id = `chatcmpl-offline-${Date.now().toString(36)}`;
  const base = { id, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: String(body.model ?? 'offline') };
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const send = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
  const call = { index: 0, id: `call_offline_${id.slice(-8)}`, type: 'function', function: { name: 'create_document', arguments: '' } };
  send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: null, tool_calls: [call] }, finish_reason: null }] });
  for (const piece of args.match(/[\s\S]{1,40}/g) ?? []) {
    send({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: piece } }] }, finish_reason: null }] });
  }
  send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] });
  const prompt = promptTokens(messages);
  const completion = countTokens(args);
  if (body.stream_options?.include_usage) send({ ...base, choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } });
  res.end('data: [DONE]\n\n');
}

export async function startOfflineResponder(): Promise<OfflineResponder> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: err.message } }));
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
