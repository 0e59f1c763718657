import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import nodeFetch from 'node-fetch';
import OpenAI from 'openai';
import type { Logger } from '../logger';

// keep-alive connections to the model's host (node-fetch asks for `Connection: close` without an agent)
const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

/**
 * The SDK's `fetch`: node-fetch (node:http, Node streams) instead of Node 20's built-in fetch
 * (undici with web streams: three ReadableStreams, a tee and several AbortSignals per request).
 * The SDK reads any async-iterable body, so the stream is consumed as a Node stream. Measured
 * with the bench's model (a 50-message request streamed back): ~0.3 ms less CPU per call
 * (BENCHMARKS.md, issue 16 step 3b).
 */
const lightFetch = ((url: string, init?: Parameters<typeof nodeFetch>[1]) =>
  nodeFetch(url, { ...init, agent: (u: URL) => (u.protocol === 'http:' ? agents.http : agents.https) })) as unknown as typeof fetch;

/**
 * The official SDK, pointed at OpenAI, any OpenAI-compatible server, or the offline responder.
 * SDK retries (429, 5xx, connection errors) happen only before a response starts streaming:
 * a reply that already produced bytes is never sent twice.
 */
export function createOpenAIClient(opts: { apiKey: string; baseURL?: string; timeoutMs: number; maxRetries: number; logger: Logger }): OpenAI {
  const log = opts.logger.child({ component: 'openai' });
  // the SDK logs the raw text of chunks it cannot parse; only the first argument (its message)
  // reaches our log, so model output never does
  const first = (msg: unknown) => String(msg);
  return new OpenAI({
    apiKey: opts.apiKey,
    baseURL: opts.baseURL,
    timeout: opts.timeoutMs,
    maxRetries: opts.maxRetries,
    fetch: lightFetch,
    logger: {
      error: (m: unknown) => log.warn(first(m)),
      warn: (m: unknown) => log.warn(first(m)),
      info: (m: unknown) => log.debug(first(m)),
      debug: (m: unknown) => log.debug(first(m)),
    },
  });
}

export type { OpenAI };
