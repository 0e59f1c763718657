import DataLoader from 'dataloader';
import { Ctx, FieldResolver, Resolver, Root } from 'type-graphql';
import { queryRows, uuidArray } from '../db/sql';
import { NotFoundError } from '../graphql/errors';
import type { GraphQLContext } from '../graphql/context';
import { File } from '../vision/file.entity';

/** Owners of visions, batched per operation (a page of file messages costs one statement). */
const owners = new WeakMap<GraphQLContext, DataLoader<string, string | null>>();

function ownerLoader(ctx: GraphQLContext): DataLoader<string, string | null> {
  let loader = owners.get(ctx);
  if (!loader) {
    loader = new DataLoader(async (ids) => {
      const rows = await queryRows(ctx.sql, 'select id, userid from visions where id = any(?::uuid[])', [uuidArray(ids)]);
      const map = new Map(rows.map((r) => [String(r.id), String(r.userid)]));
      return ids.map((id) => map.get(id) ?? null);
    });
    owners.set(ctx, loader);
  }
  return loader;
}

@Resolver(() => File)
export class FileResolver {
  /**
   * A fresh link on every read, never stored: a message written a month ago renders with a
   * working link. The viewer must own the file's vision: a presigned S3 link works for whoever
   * holds it, so it is never made for anyone else (the local route checks the owner again).
   */
  @FieldResolver(() => String, { description: 'v2. A download link for the owner, valid for FILE_URL_TTL_SECONDS.' })
  async url(@Root() file: File, @Ctx() ctx: GraphQLContext): Promise<string> {
    const viewer = ctx.user?.userId;
    const owner = file.visionId ? await ownerLoader(ctx).load(file.visionId) : null;
    if (!viewer || owner !== viewer) throw new NotFoundError('File not found');
    return ctx.files.linkFor(file, viewer);
  }
}
