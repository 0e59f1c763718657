/**
 * `npm start` without OPENAI_API_KEY: the BUILT server (dist/src/index.js, built by `npm run
 * build` before the tests) runs as a child process and answers through the offline responder.
 * In production the missing key is a configuration error.
 */
import { print } from 'graphql';
import { Client as PgClient } from 'pg';
import { createScratchDatabase } from './support/db';
import { ENTRY, spawnServer } from './support/process';
import { newUser, postGraphQL } from './support/server';
import { CreateVisionDocument, SendMessageDocument } from './generated/graphql';
import { existsSync } from 'node:fs';

const scratches: { drop(): Promise<void> }[] = [];
afterAll(async () => {
  for (const s of scratches) await s.drop().catch(() => undefined);
});

/** The pino JSON lines of a process's output. */
function jsonLines(lines: string[]): Record<string, any>[] {
  return lines.flatMap((l) => {
    try {
      return l.trim().startsWith('{') ? [JSON.parse(l) as Record<string, any>] : [];
    } catch {
      return [];
    }
  });
}

test('the build exists', () => {
  expect(existsSync(ENTRY)).toBe(true);
});

test('without OPENAI_API_KEY (development) the built server answers through the offline responder, counts tokens and exits 0 on SIGTERM', async () => {
  expect(existsSync(ENTRY)).toBe(true);
  const scratch = await createScratchDatabase('vp_offline');
  scratches.push(scratch);
  // spawnServer passes only PATH and HOME through: no key, no model endpoint, no auth setting
  const proc = await spawnServer({ NODE_ENV: 'development', DATABASE_URL: scratch.url });
  const url = `${proc.url}/graphql`;

  // the loud warning
  const warning = jsonLines(proc.output).find((l) => typeof l.msg === 'string' && l.msg.includes('OPENAI_API_KEY is not set'));
  expect(warning).toBeDefined();
  expect(warning!.level).toBe(40); // pino warn
  expect(warning!.msg).toContain('OFFLINE');

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

  expect(await proc.kill('SIGTERM')).toBe(0);
});

test('NODE_ENV=production with a JWT secret but without OPENAI_API_KEY refuses to start and names OPENAI_API_KEY', async () => {
  expect(existsSync(ENTRY)).toBe(true);
  const refused = spawnServer({
    NODE_ENV: 'production',
    AUTH_JWT_SECRET: 'a-production-secret-of-at-least-32-characters',
    // never reached when the configuration is refused; an unreachable server otherwise
    DATABASE_URL: 'postgres://postgres:postgres@127.0.0.1:1/nowhere',
  });
  // spawnServer rejects when the process exits before listening; the error carries its output
  await expect(refused).rejects.toThrow(/exited \((?!0\))\d+\) before listening[\s\S]*OPENAI_API_KEY/);
});
