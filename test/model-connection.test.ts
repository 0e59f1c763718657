import { spawn, type ChildProcess } from 'node:child_process';
import pino from 'pino';
import { createOpenAIClient, modelFetch } from '../src/llm/openai.client';

/**
 * The model's host closes an idle keep-alive connection after its timeout (uvicorn, so vLLM: 5 s,
 * without a Keep-Alive hint). A request that takes that connection just then is reset before the
 * host read it; src/llm/openai.client.ts sends it again on a new connection even with
 * LLM_MAX_RETRIES=0. The host here is a minimal HTTP/1.1 server in its own process (so its timer
 * fires while this process is busy, as under load) that closes a connection after 300 ms idle;
 * this process is kept busy across that moment, then asks again at once, before its event loop
 * could see the close (under load, that is what happens between the SDK's last await and the
 * socket's pick).
 */
const HOST = `
  const net = require('node:net');
  let chats = 0;
  let connections = 0;
  const server = net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    let counted = false;
    socket.setTimeout(300, () => socket.destroy());
    socket.on('error', () => undefined);
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\\r\\n\\r\\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString();
      const length = Number(/content-length: *(\\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + length) return;
      buf = buf.subarray(end + 4 + length);
      let body;
      if (head.startsWith('GET')) body = JSON.stringify({ chats, connections });
      else {
        chats++;
        if (!counted) connections++;
        counted = true;
        body = JSON.stringify({ id: 'c' + chats, object: 'chat.completion', created: 1, model: 'm',
          choices: [{ index: 0, message: { role: 'assistant', content: 'answer ' + chats }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } });
      }
      socket.write('HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\nconnection: keep-alive\\r\\ncontent-length: ' + Buffer.byteLength(body) + '\\r\\n\\r\\n' + body);
    });
  });
  server.listen(0, '127.0.0.1', () => console.log(server.address().port));
`;

let host: ChildProcess;
let baseURL: string;

beforeAll(async () => {
  host = spawn(process.execPath, ['-e', HOST], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve) => host.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())));
  baseURL = `http://127.0.0.1:${port}/v1`;
});

afterAll(() => {
  host?.kill();
});

const busy = (ms: number) => {
  const end = Date.now() + ms;
  while (Date.now() < end);
};

const chat = (n: number) => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: `hi ${n}` }] }),
});

it('a request on a keep-alive connection the host closed meanwhile is sent again on a new one, once', async () => {
  const url = `${baseURL}/chat/completions`;
  expect(((await (await modelFetch(url, chat(1))).json()) as any).choices[0].message.content).toBe('answer 1');
  for (let round = 2; round <= 3; round++) {
    await new Promise((r) => setTimeout(r, 100));
    // the host closes the idle connection at 300 ms while this process cannot see it
    busy(600);
    const res = await modelFetch(url, chat(round));
    expect(((await res.json()) as any).choices[0].message.content).toBe(`answer ${round}`);
  }
  const stats = (await (await fetch(baseURL.replace('/v1', '/stats'))).json()) as { chats: number; connections: number };
  // each request was answered once, each on a new connection: the reset ones never reached the host
  expect(stats).toEqual({ chats: 3, connections: 3 });
});

it('through the SDK with LLM_MAX_RETRIES=0: answered on the first try after an idle pause', async () => {
  const client = createOpenAIClient({ apiKey: 'k', baseURL, timeoutMs: 5000, maxRetries: 0, logger: pino({ level: 'silent' }) });
  const ask = () => client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
  const first = (await ask()).choices[0]!.message.content!;
  await new Promise((r) => setTimeout(r, 100));
  busy(600);
  const second = (await ask()).choices[0]!.message.content!;
  expect(Number(second.split(' ')[1])).toBe(Number(first.split(' ')[1]) + 1);
});
