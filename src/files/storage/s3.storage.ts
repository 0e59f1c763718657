import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  paginateListObjectsV2,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { pipeline, Readable, Transform } from 'node:stream';
import type { Logger } from '../../logger';
import { attachmentHeader, contentTypeOf } from '../download-headers';
import type { FilesConfig } from '../files.config';
import type { ByteRange, DownloadHeaders, FileStorage } from './file-storage';

/**
 * Part size of streamed uploads: S3's minimum. A streamed put holds at most
 * `UPLOAD_QUEUE_SIZE` parts in memory, whatever the size of the whole body.
 */
const UPLOAD_PART_BYTES = 5 * 1024 * 1024;
const UPLOAD_QUEUE_SIZE = 2;

/** The start check fails with this, naming the bucket and endpoint (never the credentials). */
export class StorageUnavailableError extends Error {
  override name = 'StorageUnavailableError';
}

const isMissing = (err: unknown): boolean =>
  (err instanceof S3ServiceException && (err.name === 'NoSuchKey' || err.name === 'NotFound' || err.$metadata?.httpStatusCode === 404)) ||
  (err as { name?: string })?.name === 'NoSuchKey';

/**
 * The S3 driver (FILE_STORAGE=s3): AWS S3 or any S3-compatible server (MinIO, Ceph, R2,
 * s3rver). A streamed put is a multipart upload (aborted when the stream fails, so nothing is
 * left); a Buffer is one PutObject. Downloads are presigned GETs straight from the store.
 */
export class S3FileStorage implements FileStorage {
  readonly driver = 's3' as const;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly where: string;

  constructor(config: FilesConfig['s3'], private readonly logger: Logger) {
    this.bucket = config.bucket;
    this.where = `bucket "${config.bucket}" at ${config.endpoint ?? `AWS S3 (${config.region})`}`;
    this.client = new S3Client({
      region: config.region,
      endpoint: config.endpoint,
      forcePathStyle: config.forcePathStyle,
      credentials: config.accessKeyId && config.secretAccessKey ? { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey } : undefined,
      // the SDK's default trailing checksums (aws-chunked uploads) are not understood by many
      // S3-compatible servers; checksums are still sent where an operation requires them
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
      // no overall request timeout: a download streams to a client at the client's pace
      requestHandler: { connectionTimeout: 5000, socketTimeout: 60_000 },
    });
  }

  /** Checks that the bucket answers with these credentials; the server does not start otherwise. */
  async init(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      const status = (err as S3ServiceException).$metadata?.httpStatusCode;
      const why =
        status === 404 ? 'the bucket does not exist' : status === 403 ? 'access denied (check S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY)' : (err as Error).message || (err as Error).name;
      throw new StorageUnavailableError(`FILE_STORAGE=s3: ${this.where} is not usable: ${why}`);
    }
  }

  async put(key: string, body: Buffer | Readable, opts: { mime: string }): Promise<{ size: number }> {
    if (Buffer.isBuffer(body)) {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: opts.mime, ContentLength: body.length }));
      return { size: body.length };
    }
    let size = 0;
    const counted = new Transform({
      transform(chunk: Buffer | string, _enc, cb) {
        size += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
        cb(null, chunk);
      },
    });
    // the upload reads `counted`; an error of `body` reaches it through the pipeline
    pipeline(body, counted, () => undefined);
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: counted, ContentType: opts.mime },
      partSize: UPLOAD_PART_BYTES,
      queueSize: UPLOAD_QUEUE_SIZE,
      // a failed multipart upload is aborted, so its parts do not linger (and cost) in the bucket
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      body.destroy();
      counted.destroy();
      throw err;
    }
    return { size };
  }

  async get(key: string, range?: ByteRange): Promise<{ body: Readable; size: number } | null> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
      );
      // ranged answers carry the whole size in Content-Range: "bytes 0-9/1234"
      const total = out.ContentRange ? Number(out.ContentRange.split('/')[1]) : out.ContentLength;
      return { body: out.Body as Readable, size: Number.isFinite(total) ? Number(total) : 0 };
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      if (!isMissing(err)) throw err;
    }
  }

  async *list(): AsyncIterable<{ key: string; modifiedAt: Date }> {
    for await (const page of paginateListObjectsV2({ client: this.client, pageSize: 1000 }, { Bucket: this.bucket })) {
      for (const o of page.Contents ?? []) {
        if (o.Key) yield { key: o.Key, modifiedAt: o.LastModified ?? new Date(0) };
      }
    }
  }

  /**
   * A presigned GET whose response carries the download headers (S3 response overrides): the
   * type, `attachment` with the UTF-8 name, and no caching by shared caches.
   */
  presignedGetUrl(key: string, headers: DownloadHeaders, expiresInSeconds: number): Promise<string> {
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: key,
      ResponseContentType: contentTypeOf(headers.mime),
      ResponseContentDisposition: attachmentHeader(headers.filename, headers.mime),
      ResponseCacheControl: 'private, no-store',
    });
    return getSignedUrl(this.client, command, { expiresIn: expiresInSeconds });
  }

  async close(): Promise<void> {
    this.client.destroy();
    this.logger.debug({ bucket: this.bucket }, 'S3 client closed');
  }
}

/** The S3 driver, checked against its bucket. */
export async function createS3Storage(config: FilesConfig['s3'], logger: Logger): Promise<S3FileStorage> {
  const storage = new S3FileStorage(config, logger);
  try {
    await storage.init();
  } catch (err) {
    await storage.close();
    throw err;
  }
  return storage;
}
