/**
 * Export (issue 13): `exportVision` writes the whole path of a vision as Markdown or JSON,
 * streamed from the database in pages into the storage driver, and returns the `File` (not added
 * to the dialog). The real server and PostgreSQL, the offline responder as the model (it answers
 * "a plan" with a real FILE_RESULT message), the local storage driver in a temporary directory.
 */
import 'reflect-metadata';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { poolRunner } from '../src/db/sql';
import { ExportFormat } from '../src/files/export.format';
import { exportVision } from '../src/files/export.service';
import type { FileStorage } from '../src/files/storage/file-storage';
import { CreateVisionDocument, SendMessageDocument, SetVisionStatusDocument } from './generated/graphql';
import { errorCode, newUser, postGraphQL, startTestServer, type TestServer } from './support/server';
import { waitUntil } from './support/wait';

let server: TestServer;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vp-export-'));
  server = await startTestServer({ SUMMARIES: 'false', FILE_DIR: dir });
});

afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

const EXPORT = `mutation Export($id: ID!, $format: ExportFormat) {
  exportVision(id: $id, format: $format) { id filename mime size visionId url createdAt } }`;

const HISTORY = `query History($id: ID!, $after: String) { vision(id: $id) {
  messages(first: 200, after: $after) {
    edges { node { id sender type state content payload createdAt file { id filename mime size } } }
    pageInfo { hasNextPage endCursor } } } }`;

type ExportedFile = { id: string; filename: string; mime: string; size: number; visionId: string; url: string };
type ApiMessage = { id: string; sender: string; type: string; state: string; content: string; payload: unknown; createdAt: string; file: unknown };

async function createVision(user: string, title: string): Promise<string> {
  const r = await server.gql(CreateVisionDocument, { input: { title } }, { user });
  return r.data!.createVision.id;
}

/** Sends through the API and waits until the reply is no longer STREAMING. */
async function send(user: string, visionId: string, content: string): Promise<void> {
  const r = await server.gql(SendMessageDocument, { input: { visionId, content } }, { user });
  expect(r.errors).toBeUndefined();
  await waitUntil('the reply is settled', async () => {
    const [row] = await server.sql(`select count(*)::int as n from vision_messages where visionid = ? and state = 'streaming'`, [visionId]);
    return row!.n === 0;
  });
}

async function exportOf(user: string, id: string, format?: 'MARKDOWN' | 'JSON') {
  return postGraphQL<{ exportVision: ExportedFile }>(server.graphqlUrl, EXPORT, format ? { id, format } : { id }, { user });
}

/** Exports and downloads through the signed link. */
async function exported(user: string, id: string, format?: 'MARKDOWN' | 'JSON'): Promise<{ file: ExportedFile; body: string }> {
  const r = await exportOf(user, id, format);
  expect(r.errors).toBeUndefined();
  const file = r.data!.exportVision;
  const res = await fetch(file.url);
  expect(res.status).toBe(200);
  const bytes = Buffer.from(await res.arrayBuffer());
  expect(bytes.length).toBe(file.size);
  return { file, body: bytes.toString('utf8') };
}

/** The whole history as the API shows it, page by page. */
async function history(user: string, id: string): Promise<ApiMessage[]> {
  const out: ApiMessage[] = [];
  let after: string | null = null;
  for (;;) {
    const r: any = await server.gql<any, any>(HISTORY, { id, after }, { user });
    expect(r.errors).toBeUndefined();
    const conn = r.data.vision.messages;
    out.push(...conn.edges.map((e: { node: ApiMessage }) => e.node));
    if (!conn.pageInfo.hasNextPage) return out;
    after = conn.pageInfo.endCursor;
  }
}

/** Every `needle` occurs in `hay` in this order (each after the end of the previous one). */
function expectInOrder(hay: string, needles: string[]): void {
  let at = 0;
  needles.forEach((needle, i) => {
    const found = hay.indexOf(needle, at);
    if (found < 0) throw new Error(`message ${i} (${JSON.stringify(needle.slice(0, 60))}) is missing or out of order`);
    at = found + needle.length;
  });
}

type PutSpy = { chunks: number[]; calls: number; restore(): void };

/**
 * Wraps the running server's storage `put` to see what the export hands it: the chunk sizes of
 * the stream, after an optional gate (to hold an export in flight) or a failure.
 */
function spyOnPut(storage: FileStorage, opts: { gate?: Promise<void>; fail?: boolean } = {}): PutSpy {
  const original = storage.put;
  const spy: PutSpy = { chunks: [], calls: 0, restore: () => (storage.put = original) };
  storage.put = async (key, body, putOpts) => {
    spy.calls++;
    await opts.gate;
    if (opts.fail) {
      if (!Buffer.isBuffer(body)) body.destroy();
      throw new Error('storage is down (test)');
    }
    if (Buffer.isBuffer(body)) return original.call(storage, key, body, putOpts);
    const counted = async function* () {
      for await (const chunk of body) {
        spy.chunks.push((chunk as Buffer).length);
        yield chunk as Buffer;
      }
    };
    return original.call(storage, key, Readable.from(counted(), { objectMode: false }), putOpts);
  };
  return spy;
}

const BULK = 3000;

describe('a vision with thousands of messages', () => {
  const user = newUser('export');
  const title = 'Бег / марафон "2027"';
  let visionId: string;

  beforeAll(async () => {
    visionId = await createVision(user, title);
    await send(user, visionId, 'Хочу пробежать марафон весной');
    // the offline responder answers a request for a plan with a FILE_RESULT message and a stored file
    await send(user, visionId, 'Составь мне план на месяц');
    const [file] = await server.sql(
      `insert into files (id, visionid, storagepath, filename, mime, size, meta)
       values (gen_random_uuid(), ?, 'files/none', 'заметки.txt', 'text/plain', 42, null) returning id`,
      [visionId],
    );
    // one statement, distinct times after the API's messages; states, types, payloads and
    // contents that Markdown and JSON must both carry (newlines, quotes, backslashes, headings)
    await server.sql(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, payload, createdat)
       select gen_random_uuid(), ?,
              case when n % 2 = 0 then 'user' else 'assistant' end,
              case when n = 1501 then 'file_result' else 'text' end,
              case when n % 500 = 0 then ''
                   else 'Сообщение №' || lpad(n::text, 5, '0') || E' — "цитата" \\\\ путь\\n## не заголовок\\nстрока ' || n end,
              case when n % 500 = 0 or n % 2 = 0 then 'complete' when n % 97 = 0 then 'stopped' when n % 101 = 0 then 'failed' else 'complete' end,
              case when n = 1501 then jsonb_build_object('fileid', ?::text, 'filename', 'заметки.txt')
                   when n % 10 = 0 then jsonb_build_object('n', n, 'tags', jsonb_build_array('a', 'б'))
                   else null end,
              now() + n * interval '1 second'
         from generate_series(1, ${BULK}) as n`,
      [visionId, file!.id],
    );
  });

  test('JSON parses back to exactly the history the API shows', async () => {
    const api = await history(user, visionId);
    expect(api.length).toBe(BULK + 4);
    expect(api.some((m) => m.type === 'FILE_RESULT' && (m.file as { filename?: string })?.filename === 'plan.md')).toBe(true);

    const { file, body } = await exported(user, visionId, 'JSON');
    expect(file).toMatchObject({ mime: 'application/json', visionId });
    expect(file.filename).toMatch(/^Бег - марафон 2027 — \d{4}-\d{2}-\d{2}\.json$/);

    const doc = JSON.parse(body);
    const [vision] = await server.sql(`select id, title, status, createdat, updatedat from visions where id = ?`, [visionId]);
    expect(doc.vision).toEqual({
      id: visionId,
      title,
      status: 'ACTIVE',
      createdAt: new Date(vision!.createdat).toISOString(),
      updatedAt: new Date(vision!.updatedat).toISOString(),
    });
    expect(Number.isNaN(Date.parse(doc.exportedAt))).toBe(false);
    expect(doc.messages).toHaveLength(api.length);
    doc.messages.forEach((m: ApiMessage, i: number) => expect(m).toEqual(api[i]));
    // what the bulk insert made is there too, not only what both sides read the same way
    const bulkFile = doc.messages.find((m: ApiMessage) => m.type === 'FILE_RESULT' && m.sender === 'ASSISTANT' && m.content.includes('01501'));
    expect(bulkFile.file).toMatchObject({ filename: 'заметки.txt', mime: 'text/plain', size: 42 });
    expect(doc.messages.filter((m: ApiMessage) => m.state === 'STOPPED').length).toBeGreaterThan(0);

    const [row] = await server.sql(`select visionid, storagepath, meta from files where id = ?`, [file.id]);
    expect(row).toMatchObject({ visionid: visionId, storagepath: `files/${file.id}`, meta: { kind: 'export', format: 'json', messages: api.length } });
  });

  test('Markdown has the head and every message in order, with states and file lines', async () => {
    const api = await history(user, visionId);
    const { file, body } = await exported(user, visionId, 'MARKDOWN');
    expect(file.mime).toBe('text/markdown');
    expect(file.filename).toMatch(/\.md$/);
    expect(body.startsWith(`# ${title}\n`)).toBe(true);
    expect(body).toContain('- Status: ACTIVE');
    expectInOrder(
      body,
      api.map((m, i) => `## ${i + 1}. ${m.sender} · ${m.createdAt}`),
    );
    expectInOrder(
      body,
      api.map((m) => m.content || '_(empty)_'),
    );
    expect(body).toMatch(/## \d+\. ASSISTANT · \S+ · STOPPED\n/);
    expect(body).toMatch(/File: plan\.md \(text\/markdown, \d+ bytes, id [0-9a-f-]{36}\)/);
    expect(body).toContain('File: заметки.txt (text/plain, 42 bytes, id ');
    expect(body.trimEnd().endsWith(`_${api.length} messages._`)).toBe(true);
  });

  test('is the default format, and the file is not added to the dialog', async () => {
    const before = await server.sql(`select count(*)::int as n from vision_messages where visionid = ?`, [visionId]);
    const r = await exportOf(user, visionId);
    expect(r.errors).toBeUndefined();
    expect(r.data!.exportVision.mime).toBe('text/markdown');
    const after = await server.sql(`select count(*)::int as n from vision_messages where visionid = ?`, [visionId]);
    expect(after[0]!.n).toBe(before[0]!.n);
    const refs = await server.sql(`select 1 from vision_messages where visionid = ? and payload->>'fileid' = ?`, [visionId, r.data!.exportVision.id]);
    expect(refs).toHaveLength(0);
  });

  test('streams: the storage receives the document in many chunks, none of them the whole', async () => {
    const spy = spyOnPut(server.server.files.storage);
    try {
      const { file } = await exported(user, visionId, 'JSON');
      // head, one chunk or more per page of 1000 messages, tail
      expect(spy.chunks.length).toBeGreaterThanOrEqual(Math.ceil((BULK + 4) / 1000) + 2);
      expect(spy.chunks.reduce((a, b) => a + b, 0)).toBe(file.size);
      expect(Math.max(...spy.chunks)).toBeLessThan(file.size / 2);
    } finally {
      spy.restore();
    }
  });

  test('one export per user at a time: a second is RATE_LIMITED, another user is not held up', async () => {
    let open!: () => void;
    const spy = spyOnPut(server.server.files.storage, { gate: new Promise<void>((r) => (open = r)) });
    try {
      const first = exportOf(user, visionId, 'JSON');
      await waitUntil('the first export reaches the storage', () => spy.calls === 1);
      const second = await exportOf(user, visionId, 'MARKDOWN');
      expect(errorCode(second)).toBe('RATE_LIMITED');
      expect(second.errors![0]!.extensions).toMatchObject({ reason: 'export_running' });

      const other = newUser('export-other');
      const otherVision = await createVision(other, 'Другой путь');
      const otherExport = exportOf(other, otherVision);
      await waitUntil('the other user’s export reaches the storage', () => spy.calls === 2);
      open();
      expect((await first).errors).toBeUndefined();
      expect((await otherExport).errors).toBeUndefined();
    } finally {
      spy.restore();
    }
    // the guard is released once the export is done
    expect((await exportOf(user, visionId)).errors).toBeUndefined();
  });

  test('a storage failure writes no row and releases the guard', async () => {
    const rowsBefore = await server.sql(`select count(*)::int as n from files where visionid = ?`, [visionId]);
    const spy = spyOnPut(server.server.files.storage, { fail: true });
    try {
      const r = await exportOf(user, visionId, 'JSON');
      expect(errorCode(r)).toBe('INTERNAL_SERVER_ERROR');
      expect(r.status).toBeLessThan(600);
    } finally {
      spy.restore();
    }
    const rowsAfter = await server.sql(`select count(*)::int as n from files where visionid = ?`, [visionId]);
    expect(rowsAfter[0]!.n).toBe(rowsBefore[0]!.n);
    expect((await exportOf(user, visionId, 'JSON')).errors).toBeUndefined();
  });
});

describe('statuses, ownership and input', () => {
  test('FROZEN and DELETED visions export, with their status in the document', async () => {
    const user = newUser('export-status');
    const visionId = await createVision(user, 'Архив');
    await send(user, visionId, 'Первый шаг сделан');

    await server.gql(SetVisionStatusDocument, { id: visionId, status: 'FROZEN' }, { user });
    const frozen = JSON.parse((await exported(user, visionId, 'JSON')).body);
    expect(frozen.vision.status).toBe('FROZEN');
    expect(frozen.messages.map((m: ApiMessage) => m.content)).toEqual((await history(user, visionId)).map((m) => m.content));
    expect(frozen.messages[0]).toMatchObject({ sender: 'USER', content: 'Первый шаг сделан', state: 'COMPLETE' });

    await server.gql(SetVisionStatusDocument, { id: visionId, status: 'DELETED' }, { user });
    const deleted = await exported(user, visionId, 'MARKDOWN');
    expect(deleted.body).toContain('- Status: DELETED');
    expect(deleted.body).toContain('Первый шаг сделан');
  });

  test('an empty vision exports valid documents', async () => {
    const user = newUser('export-empty');
    const visionId = await createVision(user, 'Пусто');
    expect(JSON.parse((await exported(user, visionId, 'JSON')).body).messages).toEqual([]);
    expect((await exported(user, visionId, 'MARKDOWN')).body).toContain('_0 messages._');
  });

  test("another user's vision and an unknown id are NOT_FOUND; a bad id is BAD_USER_INPUT; no identity is UNAUTHENTICATED", async () => {
    const owner = newUser('export-owner');
    const visionId = await createVision(owner, 'Чужое');
    const stranger = newUser('export-stranger');
    const filesBefore = await server.sql(`select count(*)::int as n from files where visionid = ?`, [visionId]);

    const foreign = await exportOf(stranger, visionId, 'JSON');
    expect(errorCode(foreign)).toBe('NOT_FOUND');
    expect(errorCode(await exportOf(stranger, '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b'))).toBe('NOT_FOUND');
    for (const bad of ['not-a-uuid', '', "1' or '1'='1"]) {
      const r = await exportOf(owner, bad);
      expect(errorCode(r)).toBe('BAD_USER_INPUT');
      expect(r.status).toBeLessThan(500);
    }
    const badFormat = await postGraphQL(server.graphqlUrl, EXPORT, { id: visionId, format: 'PDF' }, { user: owner });
    expect(errorCode(badFormat)).toBe('BAD_USER_INPUT');
    expect(badFormat.status).toBeLessThan(500);
    expect(errorCode(await postGraphQL(server.graphqlUrl, EXPORT, { id: visionId }))).toBe('UNAUTHENTICATED');

    const filesAfter = await server.sql(`select count(*)::int as n from files where visionid = ?`, [visionId]);
    expect(filesAfter[0]!.n).toBe(filesBefore[0]!.n);
  });

  test('exports count against RATE_LIMIT_EXPORTS_PER_HOUR: past it RATE_LIMITED (429) with the retry time and no file; refused exports and other users are not counted', async () => {
    // a second server on the same database and directory, with a limit of 2 per user and hour
    const limited = await startTestServer({ SUMMARIES: 'false', FILE_DIR: dir, RATE_LIMIT_EXPORTS_PER_HOUR: '2' });
    try {
      const on = (user: string, id: string) => postGraphQL<{ exportVision: ExportedFile }>(limited.graphqlUrl, EXPORT, { id }, { user });
      const user = newUser('export-limited');
      const visionId = await createVision(user, 'Лимит');
      // NOT_FOUND and bad ids write nothing and count nothing
      for (let i = 0; i < 3; i++) expect(errorCode(await on(user, '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b'))).toBe('NOT_FOUND');
      expect(errorCode(await on(user, 'not-a-uuid'))).toBe('BAD_USER_INPUT');
      for (let i = 0; i < 2; i++) {
        const ok = await on(user, visionId);
        expect(ok.errors).toBeUndefined();
      }
      const refused = await on(user, visionId);
      expect(refused.status).toBe(429);
      expect(errorCode(refused)).toBe('RATE_LIMITED');
      const retryAfter = refused.errors![0]!.extensions!.retryAfterSeconds as number;
      expect(retryAfter).toBeGreaterThan(3000);
      expect(retryAfter).toBeLessThanOrEqual(3600);
      const files = await server.sql(`select count(*)::int as n from files where visionid = ?`, [visionId]);
      expect(files[0]!.n).toBe(2);
      // another user still exports
      const other = newUser('export-unlimited');
      expect((await on(other, await createVision(other, 'Другой'))).errors).toBeUndefined();
    } finally {
      await limited.stop();
    }
  });
});

describe('the export service', () => {
  test('keyset pages break ties in time by id, in the API order, whatever the page size', async () => {
    const user = newUser('export-ties');
    const visionId = await createVision(user, 'Одно мгновение');
    // 25 messages in 3 instants: pages of 7 end in the middle of a tie
    await server.sql(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
       select gen_random_uuid(), ?, 'user', 'text', 'tie ' || n, 'complete', timestamptz '2026-11-25 10:00:00.123456+00' + (n % 3) * interval '1 microsecond'
         from generate_series(1, 25) as n`,
      [visionId],
    );
    const file = await exportVision(
      { sql: poolRunner(server.db.orm.em), storage: server.server.files.storage, pageSize: 7 },
      { userId: user, visionId, format: ExportFormat.JSON },
    );
    expect(file.meta).toEqual({ kind: 'export', format: 'json', messages: 25 });
    const got = await server.server.files.storage.get(file.storagePath);
    let text = '';
    for await (const chunk of got!.body) text += (chunk as Buffer).toString('utf8');
    const ids = JSON.parse(text).messages.map((m: { id: string }) => m.id);
    expect(ids).toEqual((await history(user, visionId)).map((m) => m.id));
    expect(new Set(ids).size).toBe(25);
  });
});
