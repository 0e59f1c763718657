/**
 * Memory of the whole path (issue 11): token budget, rolling summary through durable jobs,
 * `Vision.summary` and `Vision.context`. The real server, a real PostgreSQL (a scratch database
 * of this file: its job queue is its own), the official SDK against a fake model that tells
 * summary requests from replies by their system prompt.
 */
import { encode, encodeChat } from 'gpt-tokenizer/encoding/o200k_base';
import { print } from 'graphql';
import { Client as PgClient } from 'pg';
import { SUMMARY_PROMPT_MARKER } from '../src/llm/offline-responder';
import { tokenizerFor } from '../src/llm/tokenizer';
import { SUMMARY_HEADING } from '../src/memory/context';
import { CreateVisionDocument, SendMessageDocument, SetVisionStatusDocument } from './generated/graphql';
import { createScratchDatabase } from './support/db';
import { startFakeOpenAI, type Behaviour, type FakeOpenAI, type RecordedRequest } from './support/fake-openai';
import { spawnServer, type ServerProcess } from './support/process';
import { errorCode, newUser, postGraphQL, startTestServer, type TestServer } from './support/server';
import { sleep, waitUntil } from './support/wait';

const CONTEXT = `query Ctx($id: ID!) { vision(id: $id) { id summary { content coveredMessages coveredThroughMessageId updatedAt }
  context { budgetTokens totalTokens summary { content } recalled { id } window { id sender content } } } }`;

let fake: FakeOpenAI;
let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let server: TestServer;
let env: Record<string, string>;
/** What a summary request gets; set per test. */
let summaryBehaviour: (r: RecordedRequest) => Behaviour;

/** Background jobs poll every second: a longer default wait than the dialog's. */
const waitFor = <T>(what: string, check: () => Promise<T | null | undefined | false>, timeoutMs = 15_000) => waitUntil(what, check, timeoutMs, 100);

const isSummary = (r: RecordedRequest) => String(r.body?.messages?.[0]?.content ?? '').startsWith(SUMMARY_PROMPT_MARKER);
const summaries = () => fake.requests.filter(isSummary);
const replies = () => fake.requests.filter((r) => !isSummary(r) && r.path.endsWith('/chat/completions'));

/** A summary that names what it covered: "S[<first words of each new message>]". */
function namingSummary(r: RecordedRequest): Behaviour {
  const input = String(r.body.messages[1].content);
  const lines = input.split('New messages, oldest first:\n\n')[1]!.split('\n\n').map((l) => l.split(' ').slice(0, 2).join(' '));
  return { kind: 'stream', chunks: [`S[${lines.join('|')}]`] };
}

beforeAll(async () => {
  fake = await startFakeOpenAI();
  scratch = await createScratchDatabase('vp_memory');
  env = {
    DATABASE_URL: scratch.url,
    OPENAI_API_KEY: 'test-key',
    OPENAI_BASE_URL: fake.baseURL,
    LLM_MAX_RETRIES: '0',
    LLM_TIMEOUT_MS: '3000',
    MAX_MESSAGES: '6',
    CONTEXT_TOKEN_BUDGET: '1200',
    REPLY_TOKEN_RESERVE: '200',
    SUMMARY_MAX_TOKENS: '300',
    JOBS_POLL_SECONDS: '1',
    JOBS_MAINTENANCE_SECONDS: '1',
    JOBS_RETRY_DELAY_SECONDS: '1',
  };
  server = await startTestServer(env);
});

beforeEach(() => {
  fake.reset();
  summaryBehaviour = namingSummary;
  fake.route = (r) => (isSummary(r) ? summaryBehaviour(r) : undefined);
});

afterAll(async () => {
  await server?.stop();
  await fake?.close();
  await scratch?.drop();
});

async function createVision(user: string, s: TestServer = server, title = 'Run a marathon'): Promise<string> {
  const r = await s.gql(CreateVisionDocument, { input: { title } }, { user });
  return r.data!.createVision.id;
}

async function send(user: string, visionId: string, content: string, s: TestServer = server) {
  const r = await s.gql(SendMessageDocument, { input: { visionId, content } }, { user });
  return r;
}

async function summaryRows(visionId: string, s: TestServer = server) {
  return s.sql(`select * from vision_summaries where visionid = ? order by createdat, id`, [visionId]);
}


async function context(user: string, id: string, s: TestServer = server) {
  const r = await s.gql<any, any>(CONTEXT, { id }, { user });
  expect(r.errors).toBeUndefined();
  return r.data.vision;
}

describe('rolling summary', () => {
  test('once messages leave the window: system prompt, then the summary, then the window; a step covers only what left', async () => {
    const user = newUser('mem');
    const visionId = await createVision(user);
    for (let i = 1; i <= 3; i++) expect((await send(user, visionId, `u${i} first`)).errors).toBeUndefined();
    // six eligible messages: all fit, nothing is summarised
    expect((await context(user, visionId)).summary).toBeNull();
    await sleep(1500);
    expect(summaries()).toHaveLength(0);

    expect((await send(user, visionId, 'u4 fourth')).errors).toBeUndefined(); // u1 left the window of this request
    const [first] = await waitFor('the first summary', async () => ((await summaryRows(visionId)).length ? summaryRows(visionId) : null));
    // when the job ran, the window was u2..a4: exactly u1 and its reply left it
    const step1 = String(summaries()[0]!.body.messages[1].content);
    expect(step1).toContain('Previous summary:\n(none yet');
    expect(step1.split('New messages, oldest first:\n\n')[1]).toBe('Person: u1 first\n\nCoach: Hello from the coach.');
    expect(first).toMatchObject({ content: 'S[Person: u1|Coach: Hello]', coveredmessages: 2 });

    const before = replies().length;
    expect((await send(user, visionId, 'u5 fifth')).errors).toBeUndefined();
    const req = replies()[before]!.body.messages as { role: string; content: string }[];
    expect(req[0]!.role).toBe('system');
    expect(req[0]!.content).toContain('Run a marathon');
    expect(req[1]).toEqual({ role: 'system', content: SUMMARY_HEADING + 'S[Person: u1|Coach: Hello]' });
    // the window: the newest six after the summary's coverage, ending with the new message
    expect(req.slice(2).map((m) => m.content)).toEqual(['Hello from the coach.', 'u3 first', 'Hello from the coach.', 'u4 fourth', 'Hello from the coach.', 'u5 fifth']);

    // the next step extends the previous summary with what left since, never the whole history
    await waitFor('the second summary', async () => ((await summaryRows(visionId)).length >= 2 ? true : null));
    const step2 = String(summaries()[1]!.body.messages[1].content);
    expect(step2).toContain('Previous summary:\nS[Person: u1|Coach: Hello]');
    expect(step2.split('New messages, oldest first:\n\n')[1]).toBe('Person: u2 first\n\nCoach: Hello from the coach.');
    const view = await context(user, visionId);
    expect(view.summary).toMatchObject({ content: 'S[Person: u2|Coach: Hello]', coveredMessages: 4 });
    expect(view.context.summary.content).toBe(view.summary.content);
    expect(view.context.recalled).toEqual([]);
  });

  test('one tokenscount row per summary call with purpose "summary"; replies have purpose "reply"', async () => {
    const user = newUser('meter');
    const visionId = await createVision(user);
    for (let i = 1; i <= 5; i++) await send(user, visionId, `turn ${i}`);
    // ten messages, a window of six: the steps (one or two, as the jobs fall) cover the oldest four
    await waitFor('the summary to cover four messages', async () => (await summaryRows(visionId)).some((r) => r.coveredmessages === 4));
    await sleep(1500); // let any step still queued run
    const rows = await server.sql(`select meta from tokenscount where meta->>'visionid' = ? order by id`, [visionId]);
    const purposes = rows.map((r) => r.meta.purpose);
    expect(purposes.filter((p) => p === 'reply')).toHaveLength(5);
    const summaryCalls = summaries().filter((r) => JSON.stringify(r.body).includes(`turn `));
    expect(summaryCalls.length).toBeGreaterThan(0);
    expect(purposes.filter((p) => p === 'summary')).toHaveLength(summaryCalls.length);
    expect(await summaryRows(visionId)).toHaveLength(summaryCalls.length);
    expect(purposes.every((p) => p === 'reply' || p === 'summary')).toBe(true);
  });

  test('a failing summary call keeps the previous summary, the dialog goes on, and the step is retried', async () => {
    const user = newUser('fail');
    const visionId = await createVision(user);
    for (let i = 1; i <= 4; i++) await send(user, visionId, `f${i} go`);
    await waitFor('a first summary', async () => ((await summaryRows(visionId)).length ? true : null));
    const [kept] = await summaryRows(visionId);
    summaryBehaviour = () => ({ kind: 'status', status: 500 });
    const failedBefore = summaries().length;
    for (let i = 5; i <= 6; i++) {
      const r = await send(user, visionId, `f${i} go`);
      expect(r.data!.sendMessage.assistantMessage.state).toBe('COMPLETE');
      // the request carries the summary that exists, never a placeholder
      const last = replies()[replies().length - 1]!.body.messages;
      expect(last[1].content).toBe(SUMMARY_HEADING + kept!.content);
    }
    await waitFor('a retried summary call', async () => summaries().length >= failedBefore + 2);
    expect(await summaryRows(visionId)).toHaveLength(1);
    expect((await context(user, visionId)).summary.content).toBe(kept!.content);
    summaryBehaviour = namingSummary;
    await waitFor('the step once the model is back', async () => ((await summaryRows(visionId)).length >= 2 ? true : null), 20_000);
  });
});

describe('token budget', () => {
  test('Vision.context totals equal the tokenizer count of what the model received; the window fits the budget', async () => {
    const user = newUser('tokens');
    const visionId = await createVision(user);
    for (let i = 1; i <= 2; i++) await send(user, visionId, `Привет, шаг ${i}: I run every morning, 5 km.`);
    // the reply fails: the stored dialog is then exactly what the model received (the user message is kept)
    fake.enqueue({ kind: 'status', status: 500 });
    const r = await send(user, visionId, 'Как не бросить? How do I keep going?');
    expect(errorCode(r)).toBe('LLM_FAILED');
    const received = replies()[replies().length - 1]!.body.messages as { role: 'user'; content: string }[];
    const view = await context(user, visionId);
    expect(view.context.window.map((m: any) => m.content)).toEqual(received.slice(1).map((m) => m.content));
    expect(view.context.totalTokens).toBe(encodeChat(received, 'gpt-4o').length);
    expect(view.context.budgetTokens).toBe(1200);
  });

  test('a message longer than the budget is cut at its start, never dropped, and the request fits the budget', async () => {
    const user = newUser('long');
    const visionId = await createVision(user);
    const long = Array.from({ length: 600 }, (_, i) => `word${i}`).join(' ') + ' THE QUESTION AT THE END?';
    const r = await send(user, visionId, long);
    expect(r.errors).toBeUndefined();
    const body = replies()[replies().length - 1]!.body;
    const received = body.messages as { role: 'user'; content: string }[];
    expect(received).toHaveLength(2);
    const sent = received[1]!.content;
    expect(sent.length).toBeLessThan(long.length);
    expect(long.endsWith(sent)).toBe(true);
    expect(sent.endsWith('THE QUESTION AT THE END?')).toBe(true);
    expect(encodeChat(received, 'gpt-4o').length).toBeLessThanOrEqual(1200 - 200);
    // the document tool's definitions travel with the request: their tokens (the JSON's count,
    // an estimate) came off the room, and the cut message filled what was left
    expect(body.tools).toHaveLength(1);
    const toolTokens = encode(JSON.stringify(body.tools)).length;
    expect(toolTokens).toBeGreaterThan(50);
    expect(encodeChat(received, 'gpt-4o').length + toolTokens).toBeLessThanOrEqual(1200 - 200);
    expect(encodeChat(received, 'gpt-4o').length + toolTokens).toBeGreaterThan(1200 - 200 - 20);
    // the stored message is whole
    const [row] = await server.sql(`select content, tokens from vision_messages where id = ?`, [r.data!.sendMessage.userMessage.id]);
    expect(row).toMatchObject({ content: long });
    expect(row!.tokens).toBeGreaterThan(1000);
  });

  test('with a large budget the model gets exactly the last MAX_MESSAGES eligible messages (the seed rule)', async () => {
    const big = await startTestServer({ ...env, CONTEXT_TOKEN_BUDGET: '100000', SUMMARIES: 'false' });
    try {
      const user = newUser('big');
      const visionId = await createVision(user, big);
      for (let i = 1; i <= 5; i++) await send(user, visionId, `b${i}`, big);
      const last = replies()[replies().length - 1]!.body.messages as { content: string }[];
      // nine eligible messages (b1, reply, ..., b5): the last six, after the system prompt
      expect(last.map((m) => m.content).slice(1)).toEqual(['Hello from the coach.', 'b3', 'Hello from the coach.', 'b4', 'Hello from the coach.', 'b5']);
    } finally {
      await big.stop();
    }
  });
});

describe('metering of the request', () => {
  test("the row keeps the local count beside the provider's prompt_tokens, and the provider's cached prompt tokens", async () => {
    const user = newUser('cache');
    const visionId = await createVision(user);
    const usage = { prompt_tokens: 1234, completion_tokens: 2, total_tokens: 1236, prompt_tokens_details: { cached_tokens: 1024 } };
    fake.enqueue({ kind: 'stream', chunks: ['ok'], usage: usage as any });
    expect((await send(user, visionId, 'Hola, ¿cómo empiezo?')).errors).toBeUndefined();
    const received = replies()[replies().length - 1]!.body.messages;
    const [row] = await server.sql(`select prompttokens, rawusage, meta from tokenscount where meta->>'visionid' = ?`, [visionId]);
    expect(row!.prompttokens).toBe(1234);
    expect(row!.rawusage.prompt_tokens_details).toEqual({ cached_tokens: 1024 });
    // the local count covers the messages and the tool definitions, as the provider's does
    const tools = replies()[replies().length - 1]!.body.tools;
    expect(row!.meta.localPromptTokens).toBe(encodeChat(received, 'gpt-4o').length + encode(JSON.stringify(tools)).length);
  });
});

describe('statuses, failures, owners', () => {
  test('FAILED replies never reach a summary or the window; a FROZEN vision keeps its summary; a DELETED one gets no step', async () => {
    const user = newUser('status');
    const visionId = await createVision(user);
    fake.enqueue({ kind: 'cut', chunks: ['PARTIAL-FAILED-TEXT'] });
    expect(errorCode(await send(user, visionId, 's1 start'))).toBe('LLM_FAILED');
    for (let i = 2; i <= 5; i++) await send(user, visionId, `s${i} next`);
    await waitFor('a summary', async () => ((await summaryRows(visionId)).length ? true : null));
    for (const r of fake.requests) expect(JSON.stringify(r.body)).not.toContain('PARTIAL-FAILED-TEXT');
    expect((await server.gql(SetVisionStatusDocument, { id: visionId, status: 'FROZEN' }, { user })).errors).toBeUndefined();
    const frozen = await context(user, visionId);
    expect(frozen.summary).not.toBeNull();

    expect((await server.gql(SetVisionStatusDocument, { id: visionId, status: 'DELETED' }, { user })).errors).toBeUndefined();
    const calls = fake.requests.length;
    expect(await server.server.memory.summarizeNow(visionId)).toBe('nothing');
    expect(fake.requests.length).toBe(calls);
  });

  test("someone else's vision shows neither summary nor context (the vision is null)", async () => {
    const owner = newUser('owner');
    const visionId = await createVision(owner);
    const r = await server.gql<any, any>(CONTEXT, { id: visionId }, { user: newUser('stranger') });
    expect(r.errors).toBeUndefined();
    expect(r.data.vision).toBeNull();
  });
});

describe('durable jobs', () => {
  test('a server killed (SIGKILL) during a summary step: a restarted server finishes the step', async () => {
    const own = await createScratchDatabase('vp_memkill');
    let a: ServerProcess | undefined;
    let b: ServerProcess | undefined;
    try {
      const penv = { ...env, DATABASE_URL: own.url, LLM_TIMEOUT_MS: '1500', JOBS_EXPIRE_SECONDS: '2' };
      a = await spawnServer(penv);
      const user = newUser('kill');
      const gql = (srv: ServerProcess, doc: any, variables: unknown) => postGraphQL<any>(`${srv.url}/graphql`, print(doc), variables, { user });
      const visionId = (await gql(a, CreateVisionDocument, { input: { title: 'Crash' } })).data.createVision.id;
      let hung = false;
      summaryBehaviour = (r) => {
        if (!hung) {
          hung = true;
          return { kind: 'hang' };
        }
        return namingSummary(r);
      };
      for (let i = 1; i <= 4; i++) expect((await gql(a, SendMessageDocument, { input: { visionId, content: `k${i} step` } })).errors).toBeUndefined();
      await waitFor('the summary request', async () => summaries().length >= 1);
      await a.kill('SIGKILL');
      a = undefined;
      b = await spawnServer(penv);
      const c = new PgClient({ connectionString: own.url });
      await c.connect();
      try {
        const rows = await waitFor('the step finished by the restarted server', async () => {
          const r = await c.query(`select content, coveredmessages from vision_summaries where visionid = $1`, [visionId]);
          return r.rows.length ? r.rows : null;
        }, 30_000).catch(async (err: Error) => {
          // what the queue and the restarted server were doing, for whoever reads the failure
          const jobs = await c.query(`select state, retry_count, started_on, start_after, expire_in, output from pgboss.job where name = 'vision-summary'`);
          throw new Error(`${err.message}\njobs: ${JSON.stringify(jobs.rows)}\nsummary requests: ${summaries().length}\nrestarted server:\n${b?.output.join('\n')}`);
        });
        expect(rows).toEqual([{ content: 'S[Person: k1|Coach: Hello]', coveredmessages: 2 }]);
        expect(summaries().length).toBe(2); // the killed call and the finished one
      } finally {
        await c.end();
      }
    } finally {
      await a?.kill('SIGKILL');
      // a graceful stop is tested elsewhere (start.test.ts); here it must not outlive the test
      const stopped = b?.kill();
      const t = setTimeout(() => void b?.kill('SIGKILL'), 15_000);
      await stopped;
      clearTimeout(t);
      await own.drop();
    }
  }, 90_000);

  test('a stop while a summary call hangs cuts the call short: the request is aborted and its row settled', async () => {
    // a model timeout far beyond the test: only the queue's stop can end this call
    const own = await startTestServer({ ...env, LLM_TIMEOUT_MS: '120000' });
    let stopped = false;
    try {
      const user = newUser('stop');
      const visionId = await createVision(user, own);
      summaryBehaviour = () => ({ kind: 'hang' });
      for (let i = 1; i <= 4; i++) expect((await send(user, visionId, `h${i} hang`, own)).errors).toBeUndefined();
      const request = await waitFor('the summary request', async () => summaries()[0]);
      await own.stop();
      stopped = true;
      await waitFor('the hanging summary request aborted by the stop', async () => request.aborted, 10_000);
      const rows = await server.sql(`select state, meta->>'purpose' as purpose from tokenscount where meta->>'visionid' = ? and meta->>'purpose' = 'summary'`, [visionId]);
      expect(rows).toEqual([{ state: 'settled', purpose: 'summary' }]);
    } finally {
      if (!stopped) await own.stop();
    }
  }, 60_000);

  test('two instances on one database: one summary per step, one model call per summary', async () => {
    const second = await startTestServer(env);
    try {
      const user = newUser('two');
      const visionId = await createVision(user);
      for (let i = 1; i <= 8; i++) expect((await send(user, visionId, `t${i} both`, i % 2 ? server : second)).errors).toBeUndefined();
      // sixteen messages, a window of six: the steps cover the oldest ten
      await waitFor('coverage of ten', async () => (await summaryRows(visionId)).some((r) => r.coveredmessages === 10), 20_000);
      await sleep(2500); // any step still queued on either instance runs (and finds nothing)
      const rows = await summaryRows(visionId);
      // one metered call per summary of this vision (a step may cover only a coach message, so
      // the request text is no way to tell this vision's calls apart: the tokenscount rows are)
      const calls = await server.sql(`select 1 from tokenscount where meta->>'visionid' = ? and meta->>'purpose' = 'summary'`, [visionId]);
      expect(calls).toHaveLength(rows.length);
      expect(summaries().length).toBeGreaterThanOrEqual(rows.length);
      expect(new Set(rows.map((r) => r.coveredthroughid)).size).toBe(rows.length);
      const covered = rows.map((r) => r.coveredmessages);
      expect(covered).toEqual([...covered].sort((x, y) => x - y));
    } finally {
      await second.stop();
    }
  }, 60_000);
});

describe('300 turns with a tiny window', () => {
  test('the summary stays within SUMMARY_MAX_TOKENS and the prefix before the window is identical between turns without a summary update', async () => {
    const user = newUser('long-path');
    const visionId = await createVision(user);
    // a model that ignores max_tokens and only ever adds: the server must bound the summary itself
    summaryBehaviour = (r) => {
      const input = String(r.body.messages[1].content);
      const previous = input.split('\n\nNew messages, oldest first:')[0]!.replace('Previous summary:\n', '');
      const added = input.split('New messages, oldest first:\n\n')[1]!.replace(/\n\n/g, ' / ');
      return { kind: 'stream', chunks: [`${previous.startsWith('(none') ? 'Path:' : previous} ${added}`] };
    };
    for (let i = 1; i <= 300; i++) {
      const r = await send(user, visionId, `Day ${i}: I ran ${i % 7} km and felt ${i % 3 ? 'good' : 'tired'}.`);
      expect(r.errors).toBeUndefined();
    }
    await waitFor('the last step', async () => (await summaryRows(visionId)).some((r) => r.coveredmessages >= 590), 30_000);
    const tok = tokenizerFor('gpt-4.1');
    const rows = await summaryRows(visionId);
    expect(rows.length).toBeGreaterThan(1);
    for (const r of rows) {
      expect(r.tokens).toBeLessThanOrEqual(300);
      expect(tok.count(r.content)).toBeLessThanOrEqual(300);
    }
    // consecutive reply requests that carry the same summary share their prefix byte for byte
    const mine = replies().filter((r) => JSON.stringify(r.body).includes('I ran'));
    let compared = 0;
    for (let i = 1; i < mine.length; i++) {
      const [a, b] = [mine[i - 1]!.body.messages, mine[i]!.body.messages];
      if (a.length < 2 || b.length < 2 || a[1].content !== b[1].content) continue;
      expect(JSON.stringify(b.slice(0, 2))).toBe(JSON.stringify(a.slice(0, 2)));
      compared++;
    }
    expect(compared).toBeGreaterThan(10);
  }, 120_000);
});
