import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import nodeFetch from 'node-fetch';
import OpenAI from 'openai';
import type { Logger } from '../logger';

// keep-alive connections to the model's host (node-fetch asks for `Connection: close` without an agent)
const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

/** Resets of an idle keep-alive connection the model's host had just closed, retried at most this often. */
const STALE_CONNECTION_RETRIES = 2;

const agentFor = (u: URL): HttpAgent => (u.protocol === 'http:' ? agents.http : agents.https);

/** The agent holds an idle connection, which the next request takes instead of opening one. */
const hasIdleConnection = (agent: HttpAgent): boolean => Object.values(agent.freeSockets).some((list) => (list?.length ?? 0) > 0);

/**
 * The SDK's `fetch`: node-fetch (node:http, Node streams) instead of Node 20's built-in fetch
 * (undici with web streams: three ReadableStreams, a tee and several AbortSignals per request).
 * The SDK reads any async-iterable body, so the stream is consumed as a Node stream. Measured
 * with the bench's model (a 50-message request streamed back): ~0.3 ms less CPU per call
 * (BENCHMARKS.md, issue 16 step 3b).
 *
 * A host closes an idle keep-alive connection after its timeout (5 s for Node and uvicorn, so
 * vLLM); a request that takes that connection just then is reset (ECONNRESET) before the host
 * read it. Such a request is sent again on another connection, whatever LLM_MAX_RETRIES says
 * (Node's documented remedy, `request.reusedSocket`; node-fetch does not expose the request, so
 * "reused" is "the agent held an idle connection when the request left"). Only before a
 * response: once its headers arrived, nothing is ever sent twice.
 */
export const modelFetch = (async (url: string, init?: Parameters<typeof nodeFetch>[1]) => {
  const resendable = init?.body === undefined || init.body === null || typeof init.body === 'string' || Buffer.isBuffer(init.body);
  for (let attempt = 0; ; attempt++) {
    let reused = false;
    const agent = (u: URL) => {
      const a = agentFor(u);
      reused = hasIdleConnection(a);
      return a;
    };
    try {
      return await nodeFetch(url, { ...init, agent });
    } catch (err) {
      const reset = (err as { code?: string }).code === 'ECONNRESET';
      if (!reset || !reused || !resendable || attempt >= STALE_CONNECTION_RETRIES || init?.signal?.aborted) throw err;
    }
  }
}) as unknown as typeof fetch;

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
    fetch: modelFetch,
    logger: {
      error: (m: unknown) => log.warn(first(m)),
      warn: (m: unknown) => log.warn(first(m)),
      info: (m: unknown) => log.debug(first(m)),
      debug: (m: unknown) => log.debug(first(m)),
    },
  });
}

export type { OpenAI };
