/**
 * `npm start` without OPENAI_API_KEY: the BUILT server (dist/src/index.js, built by `npm run
 * build` before the tests) runs as a child process and answers through the offline responder.
 * In production the missing key is a configuration error.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { print } from 'graphql';
import { Client as PgClient } from 'pg';
import { findFreePort } from '../src/db/embedded';
import { createScratchDatabase } from './support/db';
import { newUser, postGraphQL } from './support/server';
import { CreateVisionDocument, SendMessageDocument } from './generated/graphql';

const ROOT = resolve(__dirname, '..');
const ENTRY = join(ROOT, 'dist', 'src', 'index.js');

type Child = ChildProcessByStdio<null, Readable, Readable>;

const children: Child[] = [];
const scratches: { drop(): Promise<void> }[] = [];

afterAll(async () => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
  for (const s of scratches) await s.drop().catch(() => undefined);
});

/** process.env without any model key, model endpoint, auth setting or log level. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) {
    if (k.startsWith('OPENAI_') || k.startsWith('AUTH_') || k.startsWith('LLM_')) delete env[k];
  }
  delete env.LOG_LEVEL;
  delete env.NODE_OPTIONS;
  return { ...env, ...extra };
}

function startChild(env: NodeJS.ProcessEnv): { child: Child; out: () => string; err: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const child = spawn(process.execPath, [ENTRY], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once('exit', (code, signal) => res({ code, signal })),
  );
  return { child, out: () => stdout, err: () => stderr, exited };
}

/** The pino JSON lines written so far (other lines are ignored). */
function jsonLines(text: string): Record<string, any>[] {
  return text
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, any>];
      } catch {
        return [];
      }
    });
}

function waitFor<T>(what: string, check: () => T | undefined, exited: Promise<unknown>, output: () => string, timeoutMs = 45_000): Promise<T> {
  return new Promise<T>((resolvePromise, reject) => {
    let done = false;
    const finish = (fn: () => void) => {
      if (!done) {
        done = true;
        clearInterval(timer);
        clearTimeout(deadline);
        fn();
      }
    };
    const timer = setInterval(() => {
      const v = check();
      if (v !== undefined) finish(() => resolvePromise(v));
    }, 50);
    const deadline = setTimeout(() => finish(() => reject(new Error(`timed out waiting for ${what}; output:\n${output()}`))), timeoutMs);
    void exited.then((e) => finish(() => reject(new Error(`the process exited (${JSON.stringify(e)}) before ${what}; output:\n${output()}`))));
  });
}

test('the build exists', () => {
  expect(existsSync(ENTRY)).toBe(true);
});

test('without OPENAI_API_KEY (development) the built server answers through the offline responder, counts tokens and exits 0 on SIGTERM', async () => {
  expect(existsSync(ENTRY)).toBe(true);
  const scratch = await createScratchDatabase('vp_offline');
  scratches.push(scratch);
  const port = await findFreePort();
  const proc = startChild(cleanEnv({ NODE_ENV: 'development', PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: scratch.url }));
  const output = () => `stdout:\n${proc.out()}\nstderr:\n${proc.err()}`;

  await waitFor(
    "the 'GraphQL server listening' log line",
    () => jsonLines(proc.out()).find((l) => typeof l.msg === 'string' && l.msg.includes('GraphQL server listening')),
    proc.exited,
    output,
  );

  // the loud warning
  const warning = jsonLines(proc.out()).find((l) => typeof l.msg === 'string' && l.msg.includes('OPENAI_API_KEY is not set'));
  expect(warning).toBeDefined();
  expect(warning!.level).toBe(40); // pino warn
  expect(warning!.msg).toContain('OFFLINE');

  const url = `http://127.0.0.1:${port}/graphql`;
  const user = newUser('offline');
  const created = await postGraphQL<any>(url, print(CreateVisionDocument), { input: { title: 'Learn to draw' } }, { user });
  expect(created.errors).toBeUndefined();
  const visionId = created.data.createVision.id as string;

  const sent = await postGraphQL<any>(url, print(SendMessageDocument), { input: { visionId, content: 'I want to draw every day' } }, { user });
  expect(sent.errors).toBeUndefined();
  const { userMessage, assistantMessage } = sent.data.sendMessage;
  expect(userMessage).toMatchObject({ sender: 'USER', state: 'COMPLETE', content: 'I want to draw every day' });
  expect(assistantMessage.sender).toBe('ASSISTANT');
  expect(assistantMessage.state).toBe('COMPLETE');
  expect(assistantMessage.content).toMatch(/^\((offline reply|офлайн-ответ)/);
  expect(assistantMessage.content).toContain('I want to draw every day');

  const pg = new PgClient({ connectionString: scratch.url });
  await pg.connect();
  try {
    const { rows } = await pg.query(`select * from tokenscount where meta ->> 'messageid' = $1`, [assistantMessage.id]);
    expect(rows).toHaveLength(1);
    const t = rows[0]!;
    expect(t).toMatchObject({ clientid: user, clienttype: 'user' });
    expect(t.meta).toMatchObject({ module: 'vision', visionid: visionId, messageid: assistantMessage.id, finish: 'complete' });
    expect(t.prompttokens).toBeGreaterThan(0);
    expect(t.completiontokens).toBeGreaterThan(0);
    expect(t.totaltokens).toBe(t.prompttokens + t.completiontokens);
    const { rows: msgs } = await pg.query(`select sender, state, content from vision_messages where visionid = $1 order by createdat, id`, [visionId]);
    expect(msgs).toEqual([
      { sender: 'user', state: 'complete', content: 'I want to draw every day' },
      { sender: 'assistant', state: 'complete', content: assistantMessage.content },
    ]);
  } finally {
    await pg.end();
  }

  proc.child.kill('SIGTERM');
  const exit = await Promise.race([
    proc.exited,
    new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000).unref()),
  ]);
  expect(exit).toEqual({ code: 0, signal: null });
});

test('NODE_ENV=production with a JWT secret but without OPENAI_API_KEY refuses to start and names OPENAI_API_KEY', async () => {
  expect(existsSync(ENTRY)).toBe(true);
  const port = await findFreePort();
  const proc = startChild(
    cleanEnv({
      NODE_ENV: 'production',
      AUTH_JWT_SECRET: 'a-production-secret-of-at-least-32-characters',
      PORT: String(port),
      HOST: '127.0.0.1',
      // never reached when the configuration is refused; an unreachable server otherwise
      DATABASE_URL: 'postgres://postgres:postgres@127.0.0.1:1/nowhere',
    }),
  );
  const exit = await Promise.race([
    proc.exited,
    new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000).unref()),
  ]);
  expect(exit).not.toBe('timeout');
  const { code } = exit as { code: number | null };
  expect(code).not.toBeNull();
  expect(code).not.toBe(0);
  expect(proc.err() + proc.out()).toContain('OPENAI_API_KEY');
  expect(proc.out()).not.toContain('GraphQL server listening');
});
