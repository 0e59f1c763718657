// Load generation and statistics. HTTP load is autocannon's programmatic API, run in the harness
// process (the server under test, PostGraphile and the floor are other processes). Serial
// latency loops use a keep-alive node:http agent and performance.now().
import autocannon from 'autocannon';
import { Agent, request } from 'node:http';

export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const idx = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[idx];
}

export const median = (values) => {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

/**
 * One autocannon run. `perClient(i)` may return { headers, body } for the i-th connection (each
 * connection then keeps its own identity and payload). `verify(body)` must return true for a
 * correct response; anything else is counted as a mismatch.
 */
export async function autocannonRun({ url, connections, seconds, headers, body, perClient, verify, timeoutS = 30 }) {
  let next = 0;
  const result = await autocannon({
    url,
    method: 'POST',
    connections,
    pipelining: 1,
    duration: seconds,
    timeout: timeoutS,
    headers,
    body,
    verifyBody: verify,
    setupClient: perClient
      ? (client) => {
          const c = perClient(next++ % connections);
          client.setHeadersAndBody(c.headers, c.body);
        }
      : undefined,
  });
  const ok = result['2xx'] - (result.mismatches ?? 0);
  return {
    rps: ok / result.duration,
    requests: result.requests.total,
    ok,
    p50: result.latency.p50,
    p99: result.latency.p99,
    mean: result.latency.average,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    mismatches: result.mismatches ?? 0,
    seconds: result.duration,
  };
}

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

/** POST with a keep-alive agent; resolves with { status, headers, text }. */
export function httpPost(url, headers, body, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) }, timeout: timeoutMs }, (res) => {
      const parts = [];
      res.on('data', (b) => parts.push(b));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(parts).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`request to ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Calls `once()` back to back (one at a time) for `seconds` or `maxCount` calls, whichever
 * comes first; returns the latency of each call in ms. `once` throws on a wrong answer.
 */
export async function serialLoop(once, { seconds, maxCount = 100_000 }) {
  const latencies = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end && latencies.length < maxCount) {
    const t0 = performance.now();
    await once();
    latencies.push(performance.now() - t0);
  }
  return latencies;
}

export function summarize(latencies) {
  return {
    count: latencies.length,
    p50: percentile(latencies, 50),
    p90: percentile(latencies, 90),
    p99: percentile(latencies, 99),
    mean: latencies.reduce((a, b) => a + b, 0) / (latencies.length || 1),
  };
}
