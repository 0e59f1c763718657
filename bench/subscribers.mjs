// The subscriber swarm of scenario 5, its own process (forked by run.mjs, driven over IPC):
// N graphql-ws clients (over `ws`), each subscribed to `messageAdded` of one vision. For every
// message it records, per client, when the event arrived (performance.timeOrigin +
// performance.now(), a wall-clock reading in ms with µs resolution) and the message's createdAt.
//
// IPC commands (each answered with { reply: <cmd>, ... }):
//   { cmd: 'connect', url, token, visionId, n, batch }  → { connected, failed, ms }
//   { cmd: 'collect', ids, expect, timeoutMs }          → { perId: { <id>: { received, createdAt, recv: [ms...] } } }
//   { cmd: 'close' }                                    → exits
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const clients = [];
/** message id → { createdAt, recv: number[] } */
const seen = new Map();
const now = () => performance.timeOrigin + performance.now();
const QUERY = 'subscription Fan($v: ID!) { messageAdded(visionId: $v) { id sender createdAt } }';

function connectOne({ url, token, visionId }) {
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok) => {
      if (!settled) {
        settled = true;
        resolve(ok);
      }
    };
    const client = createClient({
      url,
      webSocketImpl: WebSocket,
      lazy: false,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${token}` },
      on: {
        connected: () => done(true),
        closed: () => done(false),
        error: () => done(false),
      },
    });
    client.subscribe(
      { query: QUERY, variables: { v: visionId } },
      {
        next: (msg) => {
          const t = now();
          const m = msg.data?.messageAdded;
          if (!m) return;
          let entry = seen.get(m.id);
          if (!entry) {
            entry = { createdAt: Date.parse(m.createdAt), sender: m.sender, recv: [] };
            seen.set(m.id, entry);
          }
          entry.recv.push(t);
        },
        error: () => undefined,
        complete: () => undefined,
      },
    );
    clients.push(client);
  });
}

async function connect({ url, token, visionId, n, batch = 100 }) {
  const t0 = performance.now();
  let connected = 0;
  let failed = 0;
  for (let i = 0; i < n; i += batch) {
    const results = await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => connectOne({ url, token, visionId })));
    for (const ok of results) ok ? connected++ : failed++;
  }
  return { connected, failed, ms: performance.now() - t0 };
}

async function collect({ ids, expect, timeoutMs }) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !ids.every((id) => (seen.get(id)?.recv.length ?? 0) >= expect)) {
    await new Promise((r) => setTimeout(r, 5));
  }
  const perId = {};
  for (const id of ids) {
    const e = seen.get(id);
    perId[id] = e ? { received: e.recv.length, createdAt: e.createdAt, recv: e.recv } : { received: 0, createdAt: null, recv: [] };
    seen.delete(id);
  }
  return { perId };
}

process.on('message', async (msg) => {
  try {
    if (msg.cmd === 'connect') process.send({ reply: 'connect', ...(await connect(msg)) });
    else if (msg.cmd === 'collect') process.send({ reply: 'collect', ...(await collect(msg)) });
    else if (msg.cmd === 'close') {
      await Promise.allSettled(clients.map((c) => c.dispose()));
      process.exit(0);
    }
  } catch (err) {
    process.send({ reply: msg.cmd, error: String(err?.stack ?? err) });
  }
});
process.on('disconnect', () => process.exit(0));
