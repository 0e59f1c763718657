/**
 * Storage drivers (issue 13, point 3): the same body against the local directory driver and the
 * S3 driver talking real HTTP to an S3-compatible server (s3rver) started here.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { loadFilesConfig } from '../src/files/files.config';
import { fileKey } from '../src/files/files.queries';
import type { FileStorage } from '../src/files/storage/file-storage';
import { createStorage } from '../src/files/storage/create-storage';
import { BadStorageKeyError, isStorageKey } from '../src/files/storage/local.storage';
import { startS3rver, type TestS3 } from './support/s3rver';

const logger = pino({ level: 'silent' });

async function bytesOf(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

async function keysOf(storage: FileStorage): Promise<Map<string, Date>> {
  const out = new Map<string, Date>();
  for await (const o of storage.list()) out.set(o.key, o.modifiedAt);
  return out;
}

/** `total` bytes in chunks of 64 KiB; fails with `failAt` bytes sent when given. */
function generated(total: number, seed: number, failAt?: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (failAt !== undefined && sent >= failAt) {
        this.destroy(new Error('the producer failed mid-way'));
        return;
      }
      if (sent >= total) {
        this.push(null);
        return;
      }
      const n = Math.min(64 * 1024, total - sent);
      const chunk = Buffer.alloc(n, (seed + sent / 65536) % 251);
      sent += n;
      // a tick between chunks, as a real producer (a database cursor) has
      setImmediate(() => this.push(chunk));
    },
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Driver {
  storage: FileStorage;
  dir?: string;
  close(): Promise<void>;
}

async function localDriver(): Promise<Driver> {
  const dir = mkdtempSync(join(tmpdir(), 'vp-files-'));
  const storage = await createStorage(loadFilesConfig({ FILE_STORAGE: 'local', FILE_DIR: join(dir, 'files-root') }, false), logger);
  return {
    storage,
    dir: join(dir, 'files-root'),
    async close() {
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function s3Driver(): Promise<Driver> {
  const s3: TestS3 = await startS3rver();
  const storage = await createStorage(loadFilesConfig(s3.env, false), logger);
  return {
    storage,
    async close() {
      await storage.close();
      await s3.close();
    },
  };
}

describe.each([
  ['local', localDriver],
  ['s3', s3Driver],
] as const)('FileStorage: %s driver', (name, make) => {
  let d: Driver;
  beforeAll(async () => {
    d = await make();
  });
  afterAll(() => d?.close());

  test('driver is the one asked for', () => {
    expect(d.storage.driver).toBe(name);
  });

  test('put a Buffer, get it whole and by range, replace it, delete it', async () => {
    const key = fileKey(uuidv7());
    const content = Buffer.from('# План\n\nПробежать 5 км 🏃\n', 'utf8');
    expect(await d.storage.put(key, content, { mime: 'text/markdown' })).toEqual({ size: content.length });

    const whole = await d.storage.get(key);
    expect(whole!.size).toBe(content.length);
    expect((await bytesOf(whole!.body)).equals(content)).toBe(true);

    const part = await d.storage.get(key, { start: 2, end: 9 });
    // size is the whole object's, the body only the range
    expect(part!.size).toBe(content.length);
    expect((await bytesOf(part!.body)).equals(content.subarray(2, 10))).toBe(true);

    const tail = await d.storage.get(key, { start: content.length - 4, end: content.length - 1 });
    expect((await bytesOf(tail!.body)).equals(content.subarray(content.length - 4))).toBe(true);

    const replaced = Buffer.from('v2');
    await d.storage.put(key, replaced, { mime: 'text/plain' });
    expect((await bytesOf((await d.storage.get(key))!.body)).toString()).toBe('v2');

    await d.storage.delete(key);
    expect(await d.storage.get(key)).toBeNull();
    // deleting what is not there is not an error
    await expect(d.storage.delete(key)).resolves.toBeUndefined();
  });

  test('an empty object round-trips', async () => {
    const key = fileKey(uuidv7());
    expect(await d.storage.put(key, Buffer.alloc(0), { mime: 'text/plain' })).toEqual({ size: 0 });
    const got = await d.storage.get(key);
    expect(got!.size).toBe(0);
    expect((await bytesOf(got!.body)).length).toBe(0);
  });

  test('a missing object is null', async () => {
    expect(await d.storage.get(fileKey(uuidv7()))).toBeNull();
    expect(await d.storage.get(fileKey(uuidv7()), { start: 0, end: 10 })).toBeNull();
  });

  test('put a Readable: small (strings) and larger than one multipart part (streamed, not buffered whole)', async () => {
    const small = fileKey(uuidv7());
    expect(await d.storage.put(small, Readable.from(['день,км\n', '1,3\n', '2,5\n']), { mime: 'text/csv' })).toEqual({ size: Buffer.byteLength('день,км\n1,3\n2,5\n') });
    expect((await bytesOf((await d.storage.get(small))!.body)).toString('utf8')).toBe('день,км\n1,3\n2,5\n');

    const big = fileKey(uuidv7());
    const total = 11 * 1024 * 1024 + 123;
    const expected = await bytesOf(generated(total, 7));
    expect(await d.storage.put(big, generated(total, 7), { mime: 'application/json' })).toEqual({ size: total });
    const got = await d.storage.get(big);
    expect(got!.size).toBe(total);
    expect(sha(await bytesOf(got!.body))).toBe(sha(expected));

    // a range across the 5 MiB part boundary
    const start = 5 * 1024 * 1024 - 10;
    const part = await d.storage.get(big, { start, end: start + 19 });
    expect((await bytesOf(part!.body)).equals(expected.subarray(start, start + 20))).toBe(true);
  });

  test.each([
    ['within the first part', 300 * 1024],
    ['after a whole multipart part went up', 6 * 1024 * 1024],
  ])('a stream that fails mid-way (%s) leaves no object', async (_label, failAt) => {
    const key = fileKey(uuidv7());
    await expect(d.storage.put(key, generated(20 * 1024 * 1024, 3, failAt), { mime: 'text/plain' })).rejects.toThrow();
    expect(await d.storage.get(key)).toBeNull();
    expect((await keysOf(d.storage)).has(key)).toBe(false);
    if (d.dir) {
      // nor a temporary file
      const left = readdirSync(join(d.dir, 'files')).filter((n) => n.startsWith('.'));
      expect(left).toEqual([]);
    }
  });

  test('a failed put does not replace the object that was there', async () => {
    const key = fileKey(uuidv7());
    await d.storage.put(key, Buffer.from('kept'), { mime: 'text/plain' });
    await expect(d.storage.put(key, generated(1024 * 1024, 1, 128 * 1024), { mime: 'text/plain' })).rejects.toThrow();
    expect((await bytesOf((await d.storage.get(key))!.body)).toString()).toBe('kept');
  });

  test('list yields every stored key with its modification time', async () => {
    const keys = [fileKey(uuidv7()), fileKey(uuidv7()), fileKey(uuidv7())];
    const before = Date.now() - 5000;
    for (const k of keys) await d.storage.put(k, randomBytes(10), { mime: 'application/octet-stream' });
    await d.storage.delete(keys[2]!);
    const listed = await keysOf(d.storage);
    expect(listed.has(keys[0]!)).toBe(true);
    expect(listed.has(keys[1]!)).toBe(true);
    expect(listed.has(keys[2]!)).toBe(false);
    expect(listed.get(keys[0]!)!.getTime()).toBeGreaterThan(before);
    for (const k of listed.keys()) expect(k).not.toMatch(/(^|\/)\./);
  });
});

describe('local driver: only keys of the server own form', () => {
  let d: Driver;
  beforeAll(async () => {
    d = await localDriver();
  });
  afterAll(() => d?.close());

  test.each([
    '../outside',
    'files/../../etc/passwd',
    '/etc/passwd',
    'files//x',
    'files/.hidden',
    'files/x\u0000y',
    'files\\..\\x',
    '.',
    '',
    'a/b/c/d/e',
    'x'.repeat(201),
  ])('%j is refused by put, get and delete', async (key) => {
    expect(isStorageKey(key)).toBe(false);
    await expect(d.storage.put(key, Buffer.from('x'), { mime: 'text/plain' })).rejects.toBeInstanceOf(BadStorageKeyError);
    await expect(d.storage.get(key)).rejects.toBeInstanceOf(BadStorageKeyError);
    await expect(d.storage.delete(key)).rejects.toBeInstanceOf(BadStorageKeyError);
  });

  test('keys the server makes are accepted', () => {
    expect(isStorageKey(fileKey(uuidv7()))).toBe(true);
    expect(isStorageKey('exports/2026/a.md')).toBe(true);
  });
});

describe('S3 driver: the start check names what is wrong', () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startS3rver();
  });
  afterAll(() => s3?.close());

  test('a bucket that does not exist', async () => {
    await expect(createStorage(loadFilesConfig({ ...s3.env, S3_BUCKET: 'no-such-bucket' }, false), logger)).rejects.toThrow(
      /bucket "no-such-bucket" at http:\/\/127\.0\.0\.1:\d+ is not usable: the bucket does not exist/,
    );
  });

  test('credentials the store does not know', async () => {
    const err = await createStorage(loadFilesConfig({ ...s3.env, S3_ACCESS_KEY_ID: 'WRONG', S3_SECRET_ACCESS_KEY: 'WRONG' }, false), logger).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/is not usable: access denied/);
    expect((err as Error).message).not.toContain('WRONG');
  });

  test('an endpoint nobody listens on', async () => {
    await expect(createStorage(loadFilesConfig({ ...s3.env, S3_ENDPOINT: 'http://127.0.0.1:9' }, false), logger)).rejects.toThrow(/is not usable/);
  });
});
