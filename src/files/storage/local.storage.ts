import { randomBytes } from 'node:crypto';
import { mkdir, open, opendir, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import type { ByteRange, FileStorage } from './file-storage';

/**
 * One path segment of a key: starts with a letter or digit, dots only between other characters,
 * so `.`, `..`, hidden names and our own temporary files (which start with a dot) can never be keys.
 */
const SEGMENT_RE = /^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$/;
const MAX_KEY_CHARS = 200;
const MAX_KEY_DEPTH = 4;
const TEMP_SUFFIX = '.tmp';

/** A key that is not of the server's own form (a path, `..`, an absolute name, too long). */
export class BadStorageKeyError extends Error {
  override name = 'BadStorageKeyError';
}

/** True for keys the local driver accepts: 1 to 4 `/`-separated segments of {@link SEGMENT_RE}. */
export function isStorageKey(key: string): boolean {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_CHARS) return false;
  const parts = key.split('/');
  return parts.length <= MAX_KEY_DEPTH && parts.every((p) => SEGMENT_RE.test(p));
}

/**
 * The local-directory driver (FILE_STORAGE=local): one file per key under FILE_DIR. A write goes
 * to a temporary file in the target's directory, is fsynced and renamed over the target, so a
 * reader sees the old object or the whole new one, and a failed or aborted write leaves nothing.
 */
export class LocalFileStorage implements FileStorage {
  readonly driver = 'local' as const;
  private readonly root: string;

  constructor(dir: string) {
    this.root = resolve(dir);
  }

  /** Creates the directory; fails at start, not at the first download, when it cannot be written. */
  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const probe = join(this.root, `.probe-${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
    const fh = await open(probe, 'wx', 0o600);
    await fh.close();
    await unlink(probe);
  }

  private pathOf(key: string): string {
    if (!isStorageKey(key)) throw new BadStorageKeyError('not a storage key of this server');
    const path = resolve(this.root, ...key.split('/'));
    // the key pattern already excludes it; a second fence costs nothing
    if (!path.startsWith(this.root + sep)) throw new BadStorageKeyError('not a storage key of this server');
    return path;
  }

  async put(key: string, body: Buffer | Readable, _opts: { mime: string }): Promise<{ size: number }> {
    const target = this.pathOf(key);
    const dir = dirname(target);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const temp = join(dir, `.${key.split('/').pop()}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
    let fh: FileHandle | undefined = await open(temp, 'wx', 0o600);
    let size = 0;
    try {
      if (Buffer.isBuffer(body)) {
        await fh.writeFile(body);
        size = body.length;
      } else {
        // awaiting each write is the back-pressure: the stream is read no faster than the disk takes it
        for await (const chunk of body) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : (chunk as Buffer);
          await fh.write(buf);
          size += buf.length;
        }
      }
      await fh.sync();
      await fh.close();
      fh = undefined;
      await rename(temp, target);
    } catch (err) {
      if (!Buffer.isBuffer(body)) body.destroy();
      await fh?.close().catch(() => undefined);
      await rm(temp, { force: true }).catch(() => undefined);
      throw err;
    }
    await syncDir(dir);
    return { size };
  }

  async get(key: string, range?: ByteRange): Promise<{ body: Readable; size: number } | null> {
    const path = this.pathOf(key);
    let fh: FileHandle;
    try {
      // open first, then stat the handle: a delete in between cannot turn into a broken stream
      fh = await open(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      const { size } = await fh.stat();
      if (range && (range.start < 0 || range.start > range.end || range.start >= size)) {
        throw new RangeError(`range ${range.start}-${range.end} outside an object of ${size} bytes`);
      }
      const body = range ? fh.createReadStream({ start: range.start, end: Math.min(range.end, size - 1) }) : fh.createReadStream();
      return { body, size };
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.pathOf(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  async *list(): AsyncIterable<{ key: string; modifiedAt: Date }> {
    for await (const path of walk(this.root)) {
      const name = path.slice(path.lastIndexOf(sep) + 1);
      if (name.startsWith('.')) continue;
      const key = relative(this.root, path).split(sep).join('/');
      if (!isStorageKey(key)) continue;
      const st = await stat(path).catch(() => null);
      if (st?.isFile()) yield { key, modifiedAt: st.mtime };
    }
  }

  /**
   * Removes temporary files older than `before`: what a process killed in the middle of a write
   * left behind (a write that fails in-process removes its own). Returns how many went.
   */
  async removeStaleTemp(before: Date): Promise<number> {
    let removed = 0;
    for await (const path of walk(this.root)) {
      const name = path.slice(path.lastIndexOf(sep) + 1);
      if (!name.startsWith('.') || !name.endsWith(TEMP_SUFFIX)) continue;
      const st = await stat(path).catch(() => null);
      if (st && st.mtime < before) {
        await rm(path, { force: true });
        removed++;
      }
    }
    return removed;
  }

  async close(): Promise<void> {}
}

async function* walk(dir: string): AsyncGenerator<string> {
  let handle;
  try {
    handle = await opendir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for await (const entry of handle) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else if (entry.isFile()) yield path;
  }
}

/** Makes a rename durable: the directory entry is data too. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch (err) {
    // some file systems refuse fsync on a directory; the file's own data is already synced
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL' && (err as NodeJS.ErrnoException).code !== 'EISDIR') throw err;
  } finally {
    await fh.close();
  }
}
