import { bool, ConfigError, int, oneOf, str, url, type Env } from '../config.env';

/** Files (files/): storage, download links, the document tool. README's configuration table mirrors it. */
export interface FilesConfig {
  /** FILE_STORAGE: where file bytes live. @default "local" */
  storage: 'local' | 's3';
  /** FILE_DIR: the local driver's directory. @default ".data/files" */
  dir: string;
  /** DOCUMENT_TOOL: offer the model the `create_document` tool (off for servers without tool calls). @default true */
  documentTool: boolean;
  /** MAX_FILE_BYTES: the largest document the coach may create. @default 1048576 (1 MiB) */
  maxFileBytes: number;
  /** FILE_URL_TTL_SECONDS: how long a `File.url` link works. @default 300 */
  urlTtlSeconds: number;
  /**
   * FILE_URL_SECRET: HMAC key of the local driver's links (at least 32 characters); required in
   * production with the local driver. Unset elsewhere: a random key per process (links made by
   * one instance do not work on another).
   */
  urlSecret?: string;
  /** PUBLIC_URL: the base of links this server hands out (e.g. https://api.example.com); unset: the address it listens on. */
  publicUrl?: string;
  s3: {
    /** S3_ENDPOINT: any S3-compatible endpoint; unset: AWS S3 of S3_REGION. */
    endpoint?: string;
    /** S3_BUCKET (required with FILE_STORAGE=s3). */
    bucket: string;
    /** S3_REGION. @default "us-east-1" */
    region: string;
    /** S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY; unset: the SDK's default credential chain. */
    accessKeyId?: string;
    secretAccessKey?: string;
    /** S3_FORCE_PATH_STYLE: `true` for most self-hosted servers (MinIO, s3rver). @default true when S3_ENDPOINT is set */
    forcePathStyle: boolean;
  };
}

export function loadFilesConfig(env: Env, production: boolean): FilesConfig {
  const storage = oneOf(env, 'FILE_STORAGE', 'local', ['local', 's3'] as const);
  const urlSecret = str(env, 'FILE_URL_SECRET');
  if (urlSecret !== undefined && urlSecret.length < 32) throw new ConfigError('FILE_URL_SECRET must be at least 32 characters');
  if (production && storage === 'local' && !urlSecret) {
    throw new ConfigError('NODE_ENV=production with FILE_STORAGE=local needs FILE_URL_SECRET (download links are signed with it)');
  }
  const endpoint = url(env, 'S3_ENDPOINT', ['https:', 'http:']);
  const bucket = str(env, 'S3_BUCKET') ?? '';
  if (storage === 's3' && !bucket) throw new ConfigError('FILE_STORAGE=s3 needs S3_BUCKET');
  const accessKeyId = str(env, 'S3_ACCESS_KEY_ID');
  const secretAccessKey = str(env, 'S3_SECRET_ACCESS_KEY');
  if (!accessKeyId !== !secretAccessKey) throw new ConfigError('S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are set together');
  const forcePath = str(env, 'S3_FORCE_PATH_STYLE');
  if (forcePath !== undefined && forcePath !== 'true' && forcePath !== 'false') throw new ConfigError('S3_FORCE_PATH_STYLE must be true or false');
  return {
    storage,
    dir: str(env, 'FILE_DIR') ?? '.data/files',
    documentTool: bool(env, 'DOCUMENT_TOOL', true),
    maxFileBytes: int(env, 'MAX_FILE_BYTES', 1024 * 1024, 1, 100 * 1024 * 1024),
    urlTtlSeconds: int(env, 'FILE_URL_TTL_SECONDS', 300, 5, 7 * 24 * 3600),
    urlSecret,
    publicUrl: url(env, 'PUBLIC_URL', ['https:', 'http:'])?.replace(/\/+$/, ''),
    s3: {
      endpoint,
      bucket,
      region: str(env, 'S3_REGION') ?? 'us-east-1',
      accessKeyId,
      secretAccessKey,
      forcePathStyle: forcePath === undefined ? endpoint !== undefined : forcePath === 'true',
    },
  };
}
