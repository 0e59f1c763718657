import { create as contentDisposition } from 'content-disposition';
import { asciiFallback, sanitizeFilename } from './filename';

const MIME_RE = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/;

/**
 * The `Content-Type` a stored file is served with: a well-formed type only (anything else is
 * application/octet-stream, so a bad row can never add a header), text types with
 * `; charset=utf-8` (documents are written as UTF-8).
 */
export function contentTypeOf(mime: string): string {
  const m = typeof mime === 'string' ? mime.trim().toLowerCase() : '';
  if (m.length > 100 || !MIME_RE.test(m)) return 'application/octet-stream';
  return m.startsWith('text/') ? `${m}; charset=utf-8` : m;
}

/**
 * `Content-Disposition: attachment` for a stored file: the UTF-8 name as `filename*` (RFC 5987 /
 * 6266) with an ASCII `filename=` for old clients. The stored name is sanitised again, so a row
 * written by older code can never split the header or name a path.
 */
export function attachmentHeader(filename: string, mime: string): string {
  const name = sanitizeFilename(filename, mime);
  return contentDisposition(name, { type: 'attachment', fallback: asciiFallback(name) });
}
