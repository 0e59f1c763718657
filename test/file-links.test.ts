/**
 * Download links (issue 13, point 4), end to end through the real server with each storage
 * driver: the local directory (this server's signed `/files/:id` route) and S3 (presigned GETs
 * from s3rver). A file is made the way the system makes it: object first, then its `files` row
 * and a FILE_RESULT message.
 */
import { parse as parseDisposition } from 'content-disposition';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { poolRunner } from '../src/db/sql';
import { attachmentHeader, contentTypeOf } from '../src/files/download-headers';
import { parseRange } from '../src/files/download.route';
import { FileLinks } from '../src/files/file-links';
import { asciiFallback, sanitizeFilename } from '../src/files/filename';
import { fileKey, insertFile, recordUpload } from '../src/files/files.queries';
import { sweepOrphans } from '../src/files/orphan-sweep';
import { CreateVisionDocument } from './generated/graphql';
import { startS3rver, type TestS3 } from './support/s3rver';
import { newUser, startTestServer, type TestServer } from './support/server';

const SECRET = 'file-links-test-secret-0123456789abcdef';
const TTL = 60;

const FILE_QUERY = `query FileOf($id: ID!) {
  vision(id: $id) { id messages(last: 20) { edges { node { id type payload file { id filename mime size visionId url createdAt } } } } }
}`;

type FileNode = { id: string; filename: string; mime: string; size: number; visionId: string | null; url: string; createdAt: string };
type FileData = { vision: { id: string; messages: { edges: { node: { id: string; type: string; payload: any; file: FileNode | null } }[] } } | null };

describe('sanitizeFilename', () => {
  test.each([
    ['../../etc/passwd', 'text/plain', 'passwd.txt'],
    ['..\\..\\windows\\system32\\cmd.exe', 'text/plain', 'cmd.exe.txt'],
    ['/etc/passwd', 'text/markdown', 'passwd.md'],
    ['pass\u0000wd.md', 'text/markdown', 'passwd.md'],
    ['line\r\nbreak\t.md', 'text/markdown', 'linebreak.md'],
    ['a<b>c:d"e|f?g*h.csv', 'text/csv', 'abcdefgh.csv'],
    ['invoice\u202Etxt.exe', 'text/plain', 'invoicetxt.exe.txt'],
    ['zero\u200Bwidth.md', 'text/markdown', 'zerowidth.md'],
    ['.env', 'text/plain', 'env.txt'],
    ['..', 'text/markdown', 'document.md'],
    ['', 'text/markdown', 'document.md'],
    ['   ', 'text/plain', 'document.txt'],
    ['report. . .', 'text/markdown', 'report.md'],
    ['CON.txt', 'text/plain', '_CON.txt'],
    ['con.exe', 'text/plain', '_con.exe.txt'],
    ['Cafe\u0301.md', 'text/markdown', 'Café.md'],
    ['plan.MD', 'text/markdown', 'plan.MD'],
    ['data', 'application/json', 'data.json'],
    ['v1.2 plan', 'text/markdown', 'v1.2 plan.md'],
    ['many   spaces.md', 'text/markdown', 'many spaces.md'],
    ['photo.png', 'application/pdf', 'photo.png'],
    ['', 'application/pdf', 'document'],
  ])('%j (%s) → %j', (name, mime, expected) => {
    expect(sanitizeFilename(name, mime)).toBe(expected);
  });

  test.each([
    ['я'.repeat(300) + '.md', 'text/markdown', '.md'],
    ['a'.repeat(300), 'text/plain', '.txt'],
    ['🏃‍♀️'.repeat(100) + '.csv', 'text/csv', '.csv'],
    ['x.' + 'e'.repeat(300), 'text/markdown', '.md'],
  ])('a long name (%#) is cut to 200 bytes on a character boundary, keeping the extension', (name, mime, ext) => {
    const out = sanitizeFilename(name, mime);
    expect(Buffer.byteLength(out)).toBeLessThanOrEqual(200);
    expect(Buffer.byteLength(out)).toBeGreaterThan(150);
    expect(out.endsWith(ext)).toBe(true);
    // no broken surrogate pair or half a character
    expect(Buffer.from(out, 'utf8').toString('utf8')).toBe(out);
    expect(out).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
  });

  test('the ASCII fallback and the header', () => {
    expect(asciiFallback('Café.md')).toBe('Cafe.md');
    expect(asciiFallback('план бега.md')).toBe('document.md');
    expect(attachmentHeader('план бега.md', 'text/markdown')).toBe(`attachment; filename=document.md; filename*=UTF-8''%D0%BF%D0%BB%D0%B0%D0%BD%20%D0%B1%D0%B5%D0%B3%D0%B0.md`);
    expect(attachmentHeader('plan.md', 'text/markdown')).toBe('attachment; filename=plan.md');
    const hostile = attachmentHeader('a"; filename=evil.exe\r\nX-Injected: 1', 'text/plain');
    expect(hostile).not.toMatch(/[\r\n]/);
    expect(parseDisposition(hostile).parameters.filename).toBe('a; filename=evil.exeX-Injected 1.txt');
  });

  test('content types: text gets utf-8, anything malformed is octet-stream', () => {
    expect(contentTypeOf('text/markdown')).toBe('text/markdown; charset=utf-8');
    expect(contentTypeOf('application/json')).toBe('application/json');
    expect(contentTypeOf('text/html\r\nX-Injected: 1')).toBe('application/octet-stream');
    expect(contentTypeOf('')).toBe('application/octet-stream');
  });
});

describe('parseRange', () => {
  test.each([
    [undefined, 20, undefined],
    ['bytes=0-0', 20, { start: 0, end: 0 }],
    ['bytes=2-9', 20, { start: 2, end: 9 }],
    ['bytes=15-', 20, { start: 15, end: 19 }],
    ['bytes=5-100', 20, { start: 5, end: 19 }],
    ['bytes=-5', 20, { start: 15, end: 19 }],
    ['bytes=-50', 20, { start: 0, end: 19 }],
    ['bytes=20-', 20, 'unsatisfiable'],
    ['bytes=-0', 20, 'unsatisfiable'],
    ['bytes=0-', 0, 'unsatisfiable'],
    ['bytes=9-2', 20, undefined],
    ['bytes=0-1,4-5', 20, undefined],
    ['items=0-1', 20, undefined],
    ['bytes=-', 20, undefined],
    ['bytes=abc', 20, undefined],
    [`bytes=${'9'.repeat(30)}-`, 20, undefined],
  ] as const)('%j of %i bytes', (header, size, expected) => {
    expect(parseRange(header, size)).toEqual(expected);
  });
});

describe('FileLinks', () => {
  const links = new FileLinks({ urlSecret: 'x'.repeat(32), urlTtlSeconds: 300, storage: 'local' }, pino({ level: 'silent' }));
  const id = '0190d7a2-0000-7000-8000-000000000001';
  const exp = Math.floor(Date.now() / 1000) + 100;

  test('verifies its own signature for the owner only, and only in its canonical spelling', () => {
    const sig = links.sign(id, 'alice', exp);
    expect(links.verify({ fileId: id, ownerId: 'alice', exp: String(exp), sig })).toBe('ok');
    expect(links.verify({ fileId: id, ownerId: 'bob', exp: String(exp), sig })).toBe('invalid');
    expect(links.verify({ fileId: id, ownerId: 'alice', exp: String(exp + 1), sig })).toBe('invalid');
    expect(links.verify({ fileId: id, ownerId: 'alice', exp: String(exp), sig: [sig, sig] })).toBe('invalid');
    // 43 base64url characters carry 258 bits: the 2 spare bits must be zero
    const last = sig.at(-1)!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const twin = alphabet[alphabet.indexOf(last) ^ 1]!;
    expect(Buffer.from(sig.slice(0, -1) + twin, 'base64url').equals(Buffer.from(sig, 'base64url'))).toBe(true);
    expect(links.verify({ fileId: id, ownerId: 'alice', exp: String(exp), sig: sig.slice(0, -1) + twin })).toBe('invalid');
  });

  test('owner ids cannot be shifted into the file id', () => {
    expect(links.sign(id, 'a,b', exp)).not.toBe(links.sign(`${id}","a`, 'b', exp));
  });

  test('a genuine link past its expiry is expired', () => {
    const past = Math.floor(Date.now() / 1000) - 1;
    expect(links.verify({ fileId: id, ownerId: 'alice', exp: String(past), sig: links.sign(id, 'alice', past) })).toBe('expired');
  });
});

describe.each(['local', 's3'] as const)('file links: FILE_STORAGE=%s', (driver) => {
  let server: TestServer;
  let s3: TestS3 | undefined;
  let dir: string | undefined;
  const links = new FileLinks({ urlSecret: SECRET, urlTtlSeconds: TTL, storage: 'local' }, pino({ level: 'silent' }));

  beforeAll(async () => {
    let env: Record<string, string>;
    if (driver === 's3') {
      s3 = await startS3rver();
      env = s3.env;
    } else {
      dir = mkdtempSync(join(tmpdir(), 'vp-file-links-'));
      env = { FILE_STORAGE: 'local', FILE_DIR: dir };
    }
    server = await startTestServer({ ...env, FILE_URL_SECRET: SECRET, FILE_URL_TTL_SECONDS: String(TTL) });
  });

  afterAll(async () => {
    await server?.stop();
    await s3?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function createVision(user: string): Promise<string> {
    const r = await server.gql(CreateVisionDocument, { input: { title: 'Файлы' } }, { user });
    expect(r.errors).toBeUndefined();
    return r.data!.createVision.id;
  }

  /** Object first, then the row and the message that points at it (as the reply does). */
  async function makeFile(visionId: string, opts: { filename: string; mime?: string; content: Buffer | string; daysAgo?: number; sanitize?: boolean }) {
    const mime = opts.mime ?? 'text/markdown';
    const content = Buffer.isBuffer(opts.content) ? opts.content : Buffer.from(opts.content, 'utf8');
    const filename = opts.sanitize === false ? opts.filename : sanitizeFilename(opts.filename, mime);
    const id = uuidv7();
    const { size } = await server.server.files.storage.put(fileKey(id), content, { mime });
    await insertFile(poolRunner(server.db.orm.em), { id, visionId, storagePath: fileKey(id), filename, mime, size });
    const ago = `${opts.daysAgo ?? 0} days`;
    await server.sql(`update files set createdat = now() - ?::interval where id = ?`, [ago, id]);
    await server.sql(
      `insert into vision_messages (id, visionid, sender, messagetype, content, payload, state, createdat)
       values (?, ?, 'assistant', 'file_result', 'Вот файл.', ?::jsonb, 'complete', now() - ?::interval)`,
      [uuidv7(), visionId, JSON.stringify({ fileid: id, filename }), ago],
    );
    return { id, filename, mime, content };
  }

  async function fileNodes(user: string, visionId: string): Promise<FileNode[]> {
    const r = await server.gql<FileData, any>(FILE_QUERY, { id: visionId }, { user });
    expect(r.errors).toBeUndefined();
    return r.data!.vision!.messages.edges.map((e) => e.node.file).filter((f): f is FileNode => f !== null);
  }

  async function urlOf(user: string, visionId: string, fileId: string): Promise<string> {
    const f = (await fileNodes(user, visionId)).find((n) => n.id === fileId);
    expect(f).toBeDefined();
    return f!.url;
  }

  const body = async (res: Response) => Buffer.from(await res.arrayBuffer());

  test('the owner downloads identical bytes with the download headers', async () => {
    const user = newUser();
    const visionId = await createVision(user);
    const content = '# План бега\n\n1. Вторник — 3 км\n2. Суббота — 5 км 🏃\n';
    const f = await makeFile(visionId, { filename: 'план бега.md', content });

    const [node] = await fileNodes(user, visionId);
    expect(node).toMatchObject({ id: f.id, filename: 'план бега.md', mime: 'text/markdown', size: Buffer.byteLength(content), visionId });

    const res = await fetch(node!.url);
    expect(res.status).toBe(200);
    expect((await body(res)).equals(Buffer.from(content, 'utf8'))).toBe(true);
    expect(res.headers.get('content-type')).toBe('text/markdown; charset=utf-8');
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(content)));
    const disposition = parseDisposition(res.headers.get('content-disposition')!);
    expect(disposition.type).toBe('attachment');
    expect(disposition.parameters.filename).toBe('план бега.md');
    expect(res.headers.get('content-disposition')).toContain("filename*=UTF-8''%D0%BF%D0%BB%D0%B0%D0%BD%20");
    if (driver === 'local') {
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('cache-control')).toBe('private, no-store');
      expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
      expect(res.headers.get('accept-ranges')).toBe('bytes');
      expect(node!.url.startsWith(`${server.url}/files/${f.id}?exp=`)).toBe(true);
    } else {
      expect(res.headers.get('cache-control')).toBe('private, no-store');
      expect(node!.url.startsWith(`${s3!.endpoint}/${s3!.bucket}/files/${f.id}?`)).toBe(true);
    }
  });

  test('a message written 30 days ago renders with a fresh link, made on every read', async () => {
    const user = newUser();
    const visionId = await createVision(user);
    const f = await makeFile(visionId, { filename: 'old.md', content: '# old', daysAgo: 30 });
    const url = await urlOf(user, visionId, f.id);
    const u = new URL(url);
    const now = Date.now() / 1000;
    if (driver === 'local') {
      const exp = Number(u.searchParams.get('exp'));
      expect(exp).toBeGreaterThan(now + TTL - 10);
      expect(exp).toBeLessThanOrEqual(now + TTL + 1);
    } else {
      expect(u.searchParams.get('X-Amz-Expires')).toBe(String(TTL));
      const signedAt = Date.parse(u.searchParams.get('X-Amz-Date')!.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z'));
      expect(Math.abs(signedAt / 1000 - now)).toBeLessThan(10);
    }
    expect((await body(await fetch(url))).toString()).toBe('# old');
    // the link is not stored anywhere
    const [row] = await server.sql(`select meta from files where id = ?`, [f.id]);
    expect(JSON.stringify(row)).not.toContain('sig');
  });

  test('range requests: one range is 206 with Content-Range, a suffix range, an unsatisfiable one is 416', async () => {
    const user = newUser();
    const visionId = await createVision(user);
    const content = Buffer.from('0123456789abcdefghij');
    const f = await makeFile(visionId, { filename: 'digits.txt', mime: 'text/plain', content });
    const url = await urlOf(user, visionId, f.id);

    const part = await fetch(url, { headers: { range: 'bytes=2-9' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 2-9/20');
    expect(part.headers.get('content-length')).toBe('8');
    expect((await body(part)).toString()).toBe('23456789');

    if (driver === 'local') {
      // s3rver does not implement suffix ranges (S3 does)
      const suffix = await fetch(url, { headers: { range: 'bytes=-5' } });
      expect(suffix.status).toBe(206);
      expect((await body(suffix)).toString()).toBe('fghij');
    }

    const open = await fetch(url, { headers: { range: 'bytes=15-' } });
    expect(open.status).toBe(206);
    expect((await body(open)).toString()).toBe('fghij');

    const beyond = await fetch(url, { headers: { range: 'bytes=50-60' } });
    expect(beyond.status).toBe(416);
    if (driver === 'local') expect(beyond.headers.get('content-range')).toBe('bytes */20');
    await beyond.arrayBuffer();

    if (driver === 'local') {
      // several ranges are answered with the whole object, as the RFC allows
      const multi = await fetch(url, { headers: { range: 'bytes=0-1,4-5' } });
      expect(multi.status).toBe(200);
      expect((await body(multi)).equals(content)).toBe(true);

      const head = await fetch(url, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.headers.get('content-length')).toBe('20');
      expect(head.headers.get('content-disposition')).toContain('attachment');
    }
  });

  test('another user gets nothing through GraphQL', async () => {
    const owner = newUser('owner');
    const other = newUser('other');
    const visionId = await createVision(owner);
    await makeFile(visionId, { filename: 'secret.md', content: '# secret' });
    const r = await server.gql<FileData, any>(FILE_QUERY, { id: visionId }, { user: other });
    expect(r.data?.vision ?? null).toBeNull();
    expect(JSON.stringify(r)).not.toContain('secret');
    expect(JSON.stringify(r)).not.toMatch(/files\/|X-Amz|sig=/);
  });

  test('filenames: traversal, NUL and control characters, 300 characters are sanitised; the header stays one safe header', async () => {
    const user = newUser();
    const visionId = await createVision(user);
    const cases = [
      { filename: '../../etc/passwd', mime: 'text/plain', expected: 'passwd.txt' },
      { filename: 'pass\u0000wd\r\nSet-Cookie: a=b.md', mime: 'text/markdown', expected: 'passwdSet-Cookie a=b.md' },
      { filename: `${'я'.repeat(300)}.md`, mime: 'text/markdown' },
    ];
    for (const c of cases) {
      // as stored by the document tool (sanitised) and as an older row might hold it (raw)
      for (const sanitize of [true, false]) {
        // PostgreSQL text cannot hold NUL, so a raw row never has one
        const filename = sanitize ? c.filename : c.filename.replace(/\u0000/g, '');
        const f = await makeFile(visionId, { filename, mime: c.mime, content: 'x', sanitize });
        const res = await fetch(await urlOf(user, visionId, f.id));
        expect(res.status).toBe(200);
        expect(res.headers.get('set-cookie')).toBeNull();
        const header = res.headers.get('content-disposition')!;
        expect(header).not.toMatch(/[\r\n\u0000]/);
        const name = parseDisposition(header).parameters.filename!;
        expect(name).not.toMatch(/[/\\\u0000-\u001f]/);
        expect(name.startsWith('.')).toBe(false);
        expect(Buffer.byteLength(name)).toBeLessThanOrEqual(200);
        if (c.expected) expect(name).toBe(c.expected);
        else expect(name.endsWith('.md')).toBe(true);
        await res.arrayBuffer();
      }
    }
  });

  if (driver === 'local') {
    describe('refused links: 404 with nothing revealed, 403 for a genuine expired one', () => {
      let owner: string;
      let visionId: string;
      let file: { id: string };
      let url: string;
      let notFoundBody: string;

      beforeAll(async () => {
        owner = newUser('owner');
        visionId = await createVision(owner);
        file = await makeFile(visionId, { filename: 'mine.md', content: '# mine' });
        url = await urlOf(owner, visionId, file.id);
        const unknown = await fetch(`${server.url}/files/${uuidv7()}?${links.query(uuidv7(), owner)}`);
        expect(unknown.status).toBe(404);
        notFoundBody = await unknown.text();
        expect(JSON.parse(notFoundBody)).toEqual({ error: 'not_found' });
      });

      const expectNotFound = async (res: Response) => {
        expect(res.status).toBe(404);
        expect(await res.text()).toBe(notFoundBody);
        expect(res.headers.get('content-disposition')).toBeNull();
        expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      };

      test('a tampered signature', async () => {
        const u = new URL(url);
        const sig = u.searchParams.get('sig')!;
        for (const bad of [sig.slice(0, -1) + (sig.endsWith('A') ? 'B' : 'A'), (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1), sig.slice(0, 42), `${sig}A`]) {
          u.searchParams.set('sig', bad);
          await expectNotFound(await fetch(u));
        }
      });

      test('a changed expiry (signed with the old one)', async () => {
        const u = new URL(url);
        u.searchParams.set('exp', String(Number(u.searchParams.get('exp')) + 3600));
        await expectNotFound(await fetch(u));
      });

      test('an expired link is 403; an expired link with a wrong signature is still 404', async () => {
        const exp = Math.floor(Date.now() / 1000) - 10;
        const res = await fetch(`${server.url}/files/${file.id}?exp=${exp}&sig=${links.sign(file.id, owner, exp)}`);
        expect(res.status).toBe(403);
        expect(await res.json()).toEqual({ error: 'link_expired' });
        await expectNotFound(await fetch(`${server.url}/files/${file.id}?exp=${exp}&sig=${links.sign(file.id, 'someone-else', exp)}`));
      });

      test("a link made for another user, another user's link with this file's id, a link of another secret", async () => {
        const other = newUser('other');
        const otherVision = await createVision(other);
        const otherFile = await makeFile(otherVision, { filename: 'theirs.md', content: '# theirs' });
        // the other user signs a link to the owner's file with their own identity
        await expectNotFound(await fetch(`${server.url}/files/${file.id}?${links.query(file.id, other)}`));
        // the owner's genuine query string moved onto the other user's file
        await expectNotFound(await fetch(`${server.url}/files/${otherFile.id}${new URL(url).search}`));
        const foreign = new FileLinks({ urlSecret: 'another-secret-0123456789abcdefghijkl', urlTtlSeconds: TTL, storage: 'local' }, pino({ level: 'silent' }));
        await expectNotFound(await fetch(`${server.url}/files/${file.id}?${foreign.query(file.id, owner)}`));
      });

      test('malformed ids and queries are 404, never a 5xx', async () => {
        const q = new URL(url).search;
        const exp = new URL(url).searchParams.get('exp');
        const sig = new URL(url).searchParams.get('sig');
        for (const path of [
          `/files/..%2F..%2Fetc%2Fpasswd${q}`,
          `/files/%00${q}`,
          `/files/${file.id}%00${q}`,
          `/files/${'a'.repeat(300)}${q}`,
          `/files/${file.id}`,
          `/files/${file.id}?exp=${exp}`,
          `/files/${file.id}?exp=${exp}&sig=${sig}&sig=${sig}`,
          `/files/${file.id}?exp=${exp}x&sig=${sig}`,
          `/files/${file.id}?exp=-1&sig=${sig}`,
          `/files/${file.id}?exp=${'9'.repeat(40)}&sig=${sig}`,
        ]) {
          const res = await fetch(`${server.url}${path}`);
          // an over-long id is refused by the router itself (414), before the route
          expect([path, res.status]).toEqual([path, path.includes('aaaaaaaa') ? 414 : 404]);
          await res.arrayBuffer();
        }
        // and the genuine link still works
        expect((await fetch(url)).status).toBe(200);
      });

      test('a file whose object is missing is 404 (logged), and a file whose vision is gone is 404', async () => {
        const lost = await makeFile(visionId, { filename: 'lost.md', content: '# lost' });
        const lostUrl = await urlOf(owner, visionId, lost.id);
        await server.server.files.storage.delete(fileKey(lost.id));
        await expectNotFound(await fetch(lostUrl));

        const goneVision = await createVision(owner);
        const orphan = await makeFile(goneVision, { filename: 'orphan.md', content: '# orphan' });
        const orphanUrl = await urlOf(owner, goneVision, orphan.id);
        await server.sql(`delete from visions where id = ?`, [goneVision]);
        await expectNotFound(await fetch(orphanUrl));
        // left for the sweep, which has its own test below; the sweep tests expect a clean slate
        await server.sql(`delete from files where id = ?`, [orphan.id]);
        await server.server.files.storage.delete(fileKey(orphan.id));
      });
    });

    test('downloads count against the owner: past RATE_LIMIT_DOWNLOADS_PER_MINUTE 429 with Retry-After; refused links, HEAD requests and other owners are not counted', async () => {
      // a second server on the same database and directory, with a limit of 3 per owner and minute
      const limited = await startTestServer({ FILE_STORAGE: 'local', FILE_DIR: dir!, FILE_URL_SECRET: SECRET, FILE_URL_TTL_SECONDS: String(TTL), RATE_LIMIT_DOWNLOADS_PER_MINUTE: '3' });
      try {
        const owner = newUser('limited');
        const other = newUser('unlimited');
        const mine = await makeFile(await createVision(owner), { filename: 'mine.md', content: '# mine' });
        const theirs = await makeFile(await createVision(other), { filename: 'theirs.md', content: '# theirs' });
        const on = (f: { id: string }, user: string, sig?: string, method = 'GET') => {
          const u = new URL(`${limited.url}/files/${f.id}?${links.query(f.id, user)}`);
          if (sig) u.searchParams.set('sig', sig);
          return fetch(u, { method });
        };
        // refused links never reach the owner's count
        for (let i = 0; i < 5; i++) expect((await on(mine, owner, 'A'.repeat(43))).status).toBe(404);
        // nor does a HEAD (no body leaves)
        for (let i = 0; i < 5; i++) {
          const head = await on(mine, owner, undefined, 'HEAD');
          expect(head.status).toBe(200);
          expect(head.headers.get('content-length')).toBe(String('# mine'.length));
        }
        for (let i = 0; i < 3; i++) {
          const ok = await on(mine, owner);
          expect(ok.status).toBe(200);
          expect(await ok.text()).toBe('# mine');
        }
        const refused = await on(mine, owner);
        expect(refused.status).toBe(429);
        const retryAfter = Number(refused.headers.get('retry-after'));
        expect(retryAfter).toBeGreaterThanOrEqual(1);
        expect(retryAfter).toBeLessThanOrEqual(60);
        expect(await refused.json()).toEqual({ error: 'rate_limited', retryAfterSeconds: retryAfter });
        expect(refused.headers.get('content-disposition')).toBeNull();
        expect(refused.headers.get('cache-control')).toBe('private, no-store');
        // another owner's file still downloads
        expect((await on(theirs, other)).status).toBe(200);
      } finally {
        await limited.stop();
      }
    });
  } else {
    describe('refused presigned links', () => {
      test('a tampered signature, a changed response header, an expired link are refused by the store', async () => {
        const user = newUser();
        const visionId = await createVision(user);
        const f = await makeFile(visionId, { filename: 'mine.md', content: '# mine' });
        const url = await urlOf(user, visionId, f.id);

        const u = new URL(url);
        const sig = u.searchParams.get('X-Amz-Signature')!;
        u.searchParams.set('X-Amz-Signature', (sig[0] === 'a' ? 'b' : 'a') + sig.slice(1));
        const tampered = await fetch(u);
        expect(tampered.status).toBe(403);
        expect(await tampered.text()).not.toContain('# mine');

        const v = new URL(url);
        v.searchParams.set('response-content-disposition', 'inline');
        expect((await fetch(v)).status).toBe(403);

        const other = new URL(url);
        other.pathname = other.pathname.replace(f.id, uuidv7());
        expect((await fetch(other)).status).toBe(403);

        const bare = new URL(url);
        bare.search = '';
        expect((await fetch(bare)).status).toBe(403);

        const short = await server.server.files.storage.presignedGetUrl!(fileKey(f.id), { filename: 'mine.md', mime: 'text/markdown' }, 1);
        await new Promise((r) => setTimeout(r, 2100));
        const expired = await fetch(short);
        expect(expired.status).toBe(403);
        expect(await expired.text()).toMatch(/expired/i);
      });
    });
  }

  test('the orphan sweep removes exactly the recorded uploads that never got a row, and nothing it never recorded', async () => {
    const user = newUser();
    const visionId = await createVision(user);
    const kept = await makeFile(visionId, { filename: 'kept.md', content: '# kept' });
    const sql = poolRunner(server.db.orm.em);
    // a crash between the object write and its row: the upload is recorded, the object written, no row
    const orphanId = uuidv7();
    await recordUpload(sql, { fileId: orphanId, storagePath: fileKey(orphanId) });
    await server.server.files.storage.put(fileKey(orphanId), Buffer.from('left by a crash'), { mime: 'text/plain' });
    // an object this database never recorded (a directory shared with another database): never touched
    const foreignKey = fileKey(uuidv7());
    await server.server.files.storage.put(foreignKey, Buffer.from('another database'), { mime: 'text/plain' });
    const deps = { sql, storage: server.server.files.storage, logger: pino({ level: 'silent' }) };

    // younger than an hour: a reply may still be about to write its row
    expect((await sweepOrphans(deps)).deleted).toEqual([]);
    await server.sql(`update file_uploads set createdat = now() - interval '2 hours' where fileid = ?`, [orphanId]);
    const { deleted } = await sweepOrphans(deps);
    expect(deleted).toEqual([fileKey(orphanId)]);
    expect(await server.server.files.storage.get(fileKey(orphanId))).toBeNull();
    expect(await server.sql(`select 1 from file_uploads where fileid = ?`, [orphanId])).toEqual([]);
    for (const key of [fileKey(kept.id), foreignKey]) {
      const still = await server.server.files.storage.get(key);
      expect(still).not.toBeNull();
      still!.body.destroy();
    }
  });

  test('the files of a vision deleted for good are removed by the sweep, object and row; other files stay', async () => {
    const user = newUser();
    const gone = await createVision(user);
    const kept = await createVision(user);
    const a = await makeFile(gone, { filename: 'a.md', content: '# a' });
    const b = await makeFile(gone, { filename: 'b.md', content: '# b' });
    const k = await makeFile(kept, { filename: 'k.md', content: '# k' });
    const deps = { sql: poolRunner(server.db.orm.em), storage: server.server.files.storage, logger: pino({ level: 'silent' }) };
    await server.sql(`delete from visions where id = ?`, [gone]);
    // the link of the deleted vision's files is gone: nobody can reach them
    expect(await server.sql(`select count(*)::int as n from files where id in (?, ?) and visionid is null`, [a.id, b.id])).toEqual([{ n: 2 }]);

    const { deleted } = await sweepOrphans(deps);
    expect([...deleted].sort()).toEqual([fileKey(a.id), fileKey(b.id)].sort());
    for (const f of [a, b]) expect(await server.server.files.storage.get(fileKey(f.id))).toBeNull();
    expect(await server.sql(`select id from files where id in (?, ?, ?)`, [a.id, b.id, k.id])).toEqual([{ id: k.id }]);
    expect(await server.sql(`select 1 from file_uploads where fileid in (?, ?)`, [a.id, b.id])).toEqual([]);
    const still = await server.server.files.storage.get(fileKey(k.id));
    expect(still).not.toBeNull();
    still!.body.destroy();
    expect((await sweepOrphans(deps)).deleted).toEqual([]);
  });
});
