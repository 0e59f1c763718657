import { S3RequestPresigner } from '@aws-sdk/s3-request-presigner';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** s3rver ships no types; the part the tests use. */
interface S3rverInstance {
  configureBuckets(): Promise<void>;
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  logger?: { close(): void; exceptions?: { unhandle(): void } };
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver') as new (opts: Record<string, unknown>) => S3rverInstance;

/** The credentials s3rver accepts. */
export const S3RVER_KEY = 'S3RVER';
const REGION = 'us-east-1';

export interface TestS3 {
  endpoint: string;
  bucket: string;
  /** What the server reads from the environment to use this S3. */
  env: Record<string, string>;
  close(): Promise<void>;
}

const toBytes = (d: string | ArrayBuffer | ArrayBufferView): string | Uint8Array =>
  typeof d === 'string' ? d : d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

/** node:crypto behind the SDK's checksum interface (plain SHA-256, or HMAC with a key). */
class Sha256 {
  private h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret ? createHmac('sha256', toBytes(secret)) : createHash('sha256');
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(toBytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
  reset(): void {}
}

const AUTH_PARAMS = ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature', 'X-Amz-Security-Token'];
const presigner = new S3RequestPresigner({ credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY }, region: REGION, sha256: Sha256 });

/**
 * s3rver 3.7 does not check SigV4 signatures (its source says so) and serves objects to
 * anonymous GETs. Real S3 and MinIO do both, so in front of it: a GET or HEAD must be a presigned
 * URL (query SigV4) or carry an Authorization header (the SDK's own calls), and a presigned
 * URL's signature is recomputed with the SDK's signer from everything it covers (path, every
 * other query parameter, the date and lifetime). Expiry is left to s3rver, which checks it.
 */
async function presignedVerdict(req: IncomingMessage): Promise<'pass' | 'forbidden'> {
  if (req.method !== 'GET' && req.method !== 'HEAD') return 'pass';
  const u = new URL(req.url ?? '/', `http://${req.headers.host}`);
  const given = u.searchParams.get('X-Amz-Signature');
  if (!given) return req.headers.authorization ? 'pass' : 'forbidden';
  const query: Record<string, string> = {};
  for (const [k, v] of u.searchParams) if (!AUTH_PARAMS.includes(k)) query[k] = v;
  const date = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(u.searchParams.get('X-Amz-Date') ?? '');
  const expiresIn = Number(u.searchParams.get('X-Amz-Expires'));
  if (!date || !Number.isInteger(expiresIn)) return 'forbidden';
  const signingDate = new Date(`${date[1]}-${date[2]}-${date[3]}T${date[4]}:${date[5]}:${date[6]}Z`);
  const signed = await presigner.presign(
    { method: 'GET', protocol: 'http:', hostname: u.hostname, port: Number(u.port), path: u.pathname, query, headers: { host: u.host } },
    { signingDate, expiresIn },
  );
  const expected = Buffer.from(String(signed.query?.['X-Amz-Signature'] ?? ''));
  const actual = Buffer.from(given);
  return expected.length === actual.length && timingSafeEqual(expected, actual) ? 'pass' : 'forbidden';
}

function denied(res: ServerResponse): void {
  res.writeHead(403, { 'content-type': 'application/xml' });
  res.end('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>Access denied</Message></Error>');
}

/**
 * An S3-compatible server (s3rver: real HTTP, multipart uploads, ranges, presigned URL expiry,
 * plus the signature check above) on a free loopback port, its objects in a temporary directory,
 * with one bucket.
 */
export async function startS3rver(bucket = 'vision-files'): Promise<TestS3> {
  // the SDK warns once per process that its Node 20 support ends; known, noted in README
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const directory = mkdtempSync(join(tmpdir(), 'vp-s3rver-'));
  const s3rver = new S3rver({ silent: true, directory, configureBuckets: [{ name: bucket }] });
  await s3rver.configureBuckets();
  const handle = s3rver.callback();
  const http = createServer((req, res) => {
    presignedVerdict(req).then(
      (verdict) => (verdict === 'pass' ? handle(req, res) : denied(res)),
      () => denied(res),
    );
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return {
    endpoint,
    bucket,
    env: {
      FILE_STORAGE: 's3',
      S3_ENDPOINT: endpoint,
      S3_BUCKET: bucket,
      S3_REGION: REGION,
      S3_ACCESS_KEY_ID: S3RVER_KEY,
      S3_SECRET_ACCESS_KEY: S3RVER_KEY,
    },
    async close() {
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
      s3rver.logger?.exceptions?.unhandle();
      s3rver.logger?.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
