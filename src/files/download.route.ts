import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { SqlRunner } from '../db/sql';
import { RateLimitedError, type RateLimits } from '../graphql/rate-limits';
import type { Logger } from '../logger';
import { attachmentHeader, contentTypeOf } from './download-headers';
import { parseLinkQuery, type FileLinks } from './file-links';
import { findFileWithOwner } from './files.queries';
import type { ByteRange, FileStorage } from './storage/file-storage';
import { BadStorageKeyError } from './storage/local.storage';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Every response of the route, errors included: nothing is cached, sniffed, rendered or leaked by referrer. */
const COMMON_HEADERS = {
  'cache-control': 'private, no-store',
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'none'; sandbox",
  'referrer-policy': 'no-referrer',
};

/**
 * One body for an unknown file, a file without an owner, a malformed or a forged link, a link
 * made for someone else: a caller learns nothing about which it was.
 */
const NOT_FOUND = { error: 'not_found' };

/**
 * A single `Range: bytes=…` against an object of `size` bytes (RFC 9110 §14): the inclusive
 * range, `unsatisfiable` (416), or undefined when the whole object is sent (no header, another
 * unit, several ranges, a malformed or backwards range: all of them are ignored, as the RFC allows).
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d{0,15})\s*-\s*(\d{0,15})\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    // suffix range: the last n bytes
    const n = Number(m[2]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  // a last position before the first is a malformed range (ignored), not an unsatisfiable one
  if (m[2] !== '' && Number(m[2]) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end: m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1) };
}

/**
 * `GET` and `HEAD /files/:id?exp=…&sig=…`: the local driver's signed download links.
 *
 * 404 (one body for every case) unless the file exists, has an owner and the signature verifies
 * for that owner; 403 for a genuine link past its expiry; 206 for a satisfiable single range,
 * 416 for an unsatisfiable one; 503 when the database or the storage fails (logged, generic body).
 * A genuine link's GET counts against its owner's RATE_LIMIT_DOWNLOADS_PER_MINUTE (a link passed
 * around cannot pull a file without end): past it, 429 with `Retry-After`. Refused links and HEAD
 * requests count nothing; a range request counts as a download.
 */
export function registerDownloadRoute(
  app: FastifyInstance,
  deps: { sql: SqlRunner; storage: FileStorage; links: FileLinks; logger: Logger; limits?: Pick<RateLimits, 'consumeDownload'> },
): void {
  const { sql, storage, links, logger, limits } = deps;

  const fail = (reply: FastifyReply, status: number, body: object) => reply.code(status).type('application/json; charset=utf-8').send(body);

  app.route<{ Params: { id: string } }>({
    method: ['GET', 'HEAD'],
    url: '/files/:id',
    errorHandler(err, request, reply) {
      const status = (err as { statusCode?: number }).statusCode ?? 500;
      reply.headers(COMMON_HEADERS);
      // whatever a client got wrong looks like any other refused link
      if (status >= 400 && status < 500) return fail(reply, 404, NOT_FOUND);
      logger.error({ err, url: request.routeOptions.url }, 'file download failed');
      return fail(reply, 500, { error: 'internal_error' });
    },
    async handler(request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) {
      reply.headers(COMMON_HEADERS);
      const id = request.params.id;
      const link = parseLinkQuery(request.query);
      // malformed links are refused before any lookup: random probing costs no database work
      if (!UUID_RE.test(id) || !link) return fail(reply, 404, NOT_FOUND);
      const fileId = id.toLowerCase();

      let found: Awaited<ReturnType<typeof findFileWithOwner>>;
      try {
        found = await findFileWithOwner(sql, fileId);
      } catch (err) {
        logger.error({ err, fileId }, 'file download: the database lookup failed');
        return fail(reply, 503, { error: 'unavailable' });
      }
      if (!found || !found.ownerId) return fail(reply, 404, NOT_FOUND);
      const check = links.verify({ fileId, ownerId: found.ownerId, exp: link.exp, sig: link.sig });
      if (check === 'invalid') return fail(reply, 404, NOT_FOUND);
      if (check === 'expired') return fail(reply, 403, { error: 'link_expired' });
      try {
        // a HEAD sends no body: it spends nothing of the owner's downloads
        if (request.method === 'GET') await limits?.consumeDownload(found.ownerId);
      } catch (err) {
        if (!(err instanceof RateLimitedError)) throw err;
        const retryAfterSeconds = err.extensions.retryAfterSeconds as number;
        reply.header('retry-after', String(retryAfterSeconds));
        return fail(reply, 429, { error: 'rate_limited', retryAfterSeconds });
      }

      const { file } = found;
      // If-Range needs a validator this route does not hand out, so it never matches: whole object
      const range = request.headers['if-range'] ? undefined : parseRange(request.headers.range, file.size);
      if (range === 'unsatisfiable') {
        reply.header('content-range', `bytes */${file.size}`);
        return fail(reply, 416, { error: 'range_not_satisfiable' });
      }

      let object: Awaited<ReturnType<FileStorage['get']>>;
      try {
        object = await storage.get(file.storagePath, range);
      } catch (err) {
        if (err instanceof BadStorageKeyError) {
          logger.error({ fileId }, 'file download: the row names a storage key the driver refuses');
          return fail(reply, 404, NOT_FOUND);
        }
        logger.error({ err, fileId }, 'file download: the storage failed');
        return fail(reply, 503, { error: 'unavailable' });
      }
      if (!object) {
        // a row without its object: the write order (object first) should make this impossible
        logger.error({ fileId, key: file.storagePath }, 'file download: the stored object is missing');
        return fail(reply, 404, NOT_FOUND);
      }
      if (object.size !== file.size) {
        object.body.destroy();
        logger.error({ fileId, rowSize: file.size, storedSize: object.size }, 'file download: the stored object does not match its row');
        return fail(reply, 500, { error: 'internal_error' });
      }

      reply.headers({
        'content-type': contentTypeOf(file.mime),
        'content-disposition': attachmentHeader(file.filename, file.mime),
        'accept-ranges': 'bytes',
      });
      if (range) {
        reply.code(206).headers({ 'content-range': `bytes ${range.start}-${range.end}/${file.size}`, 'content-length': range.end - range.start + 1 });
      } else {
        reply.code(200).header('content-length', file.size);
      }
      if (request.method === 'HEAD') {
        object.body.destroy();
        return reply.send();
      }
      object.body.once('error', (err) => logger.warn({ err, fileId }, 'file download: the stream broke off'));
      return reply.send(object.body);
    },
  });
}
