import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../logger';
import type { File } from '../vision/file.entity';
import type { FilesConfig } from './files.config';
import type { FileStorage } from './storage/file-storage';

/** What {@link FileLinks.verify} found. */
export type LinkCheck = 'ok' | 'expired' | 'invalid';

/** A SHA-256 HMAC is 32 bytes: 43 characters of unpadded base64url. */
const SIG_RE = /^[A-Za-z0-9_-]{43}$/;
/** Unix seconds; 12 digits reach the year 33658. */
const EXP_RE = /^[0-9]{1,12}$/;

/** The `exp` and `sig` of a link's query when both are present and well-formed, else null (no lookup needed). */
export function parseLinkQuery(query: unknown): { exp: string; sig: string } | null {
  const q = (query ?? {}) as Record<string, unknown>;
  const { exp, sig } = q;
  // a repeated parameter arrives as an array: not a link this server made
  if (typeof exp !== 'string' || typeof sig !== 'string' || !EXP_RE.test(exp) || !SIG_RE.test(sig)) return null;
  return { exp, sig };
}

/**
 * Download links. For the local driver: `<base>/files/<id>?exp=<unix seconds>&sig=<HMAC>`, the
 * HMAC-SHA256 of (file id, owner id, expiry) under FILE_URL_SECRET; the download route looks the
 * owner up and checks the signature against it, so a link made for anyone but the owner does not
 * work. For S3: a presigned GET of the same lifetime. Links are made on every read of `File.url`
 * and never stored.
 */
export class FileLinks {
  private readonly key: Buffer;
  private readonly ttlSeconds: number;

  constructor(config: Pick<FilesConfig, 'urlSecret' | 'urlTtlSeconds' | 'storage'>, logger: Logger) {
    this.ttlSeconds = config.urlTtlSeconds;
    if (config.urlSecret) {
      this.key = Buffer.from(config.urlSecret, 'utf8');
    } else {
      // config refuses this in production; elsewhere a restart (or another instance) invalidates links
      this.key = randomBytes(32);
      if (config.storage === 'local') {
        logger.warn('FILE_URL_SECRET is not set: download links are signed with a random per-process key and work only on this instance until it restarts');
      }
    }
  }

  /** The base64url HMAC of one link. Exposed for tests that build links by hand. */
  sign(fileId: string, ownerId: string, exp: number): string {
    // JSON keeps the fields apart whatever characters an owner id contains
    const message = JSON.stringify(['vision-path/file-link/v1', fileId, ownerId, exp]);
    return createHmac('sha256', this.key).update(message).digest('base64url');
  }

  /** The query string of a local link for `ownerId`, expiring `ttlSeconds` from `now`. */
  query(fileId: string, ownerId: string, now = Date.now()): string {
    const exp = Math.floor(now / 1000) + this.ttlSeconds;
    return `exp=${exp}&sig=${this.sign(fileId, ownerId, exp)}`;
  }

  /**
   * Checks a link's `exp` and `sig` (raw query values) for the file's real owner. A signature
   * that does not match is `invalid` whatever the expiry says; only a genuine link can be `expired`.
   */
  verify(args: { fileId: string; ownerId: string; exp: unknown; sig: unknown; now?: number }): LinkCheck {
    const parsed = parseLinkQuery({ exp: args.exp, sig: args.sig });
    if (!parsed) return 'invalid';
    const { exp, sig } = parsed;
    const expected = Buffer.from(this.sign(args.fileId, args.ownerId, Number(exp)), 'base64url');
    const given = Buffer.from(sig, 'base64url');
    // the last of 43 characters carries 2 unused bits: only the canonical spelling is accepted
    if (given.toString('base64url') !== sig) return 'invalid';
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid';
    return Number(exp) * 1000 <= (args.now ?? Date.now()) ? 'expired' : 'ok';
  }

  /** A fresh link to `file` for its owner: presigned by the object store, or this server's signed route. */
  async linkFor(args: { file: File; ownerId: string; baseUrl: string; storage: FileStorage }): Promise<string> {
    const { file, ownerId, baseUrl, storage } = args;
    if (storage.presignedGetUrl) {
      return storage.presignedGetUrl(file.storagePath, { filename: file.filename, mime: file.mime }, this.ttlSeconds);
    }
    return `${baseUrl}/files/${file.id}?${this.query(file.id, ownerId)}`;
  }
}
