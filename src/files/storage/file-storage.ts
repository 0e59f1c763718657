import type { Readable } from 'node:stream';

/** An inclusive byte range, as in an HTTP `Range: bytes=start-end` header. */
export interface ByteRange {
  start: number;
  end: number;
}

/** Headers a download answers with; a presigned S3 link carries them as response overrides. */
export interface DownloadHeaders {
  filename: string;
  mime: string;
}

/**
 * Where file bytes live. Keys are made by the server (`files/<uuid>`), never from a filename.
 * Two drivers: a local directory and S3-compatible object storage.
 */
export interface FileStorage {
  readonly driver: 'local' | 's3';
  /**
   * Stores `body` under `key` (replacing what was there) and resolves with the bytes written once
   * they are durable. A stream is consumed to its end; a failed write leaves no object behind.
   */
  put(key: string, body: Buffer | Readable, opts: { mime: string }): Promise<{ size: number }>;
  /**
   * The object (or the range of it, end clamped to the last byte), or null when there is none.
   * `size` is always the whole object's size, also for a range (the route's Content-Range needs it).
   */
  get(key: string, range?: ByteRange): Promise<{ body: Readable; size: number } | null>;
  /** Removes the object; removing a missing one is not an error. */
  delete(key: string): Promise<void>;
  /** Every stored key with its last modification (for the orphan sweep). */
  list(): AsyncIterable<{ key: string; modifiedAt: Date }>;
  /**
   * A direct download link valid for `expiresInSeconds` (S3: a presigned GET with the headers as
   * response overrides). Undefined for drivers whose bytes are served by this server's own route.
   */
  presignedGetUrl?(key: string, headers: DownloadHeaders, expiresInSeconds: number): Promise<string>;
  /** Releases sockets and handles. */
  close(): Promise<void>;
}
