import type { Logger } from '../../logger';
import type { FilesConfig } from '../files.config';
import type { FileStorage } from './file-storage';
import { LocalFileStorage } from './local.storage';
import { createS3Storage } from './s3.storage';

/**
 * The driver FILE_STORAGE names, checked before the server takes requests: the local directory
 * is created and written to once, the S3 bucket must answer HeadBucket.
 */
export async function createStorage(config: FilesConfig, logger: Logger): Promise<FileStorage> {
  if (config.storage === 's3') {
    const storage = await createS3Storage(config.s3, logger);
    logger.info({ bucket: config.s3.bucket, endpoint: config.s3.endpoint ?? `aws:${config.s3.region}` }, 'files are stored in S3');
    return storage;
  }
  const storage = new LocalFileStorage(config.dir);
  await storage.init();
  logger.info({ dir: config.dir }, 'files are stored in a local directory');
  return storage;
}
