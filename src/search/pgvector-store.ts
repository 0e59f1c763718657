import { limitSql, queryRows, type SqlOn, uuidArray } from '../db/sql';
import type { Logger } from '../logger';
import type { SearchConfig } from './search.config';
import { SignIndex } from './sign-index';
import { byScore, Float4Store, float4Literal, type EmbeddingRow, type NearestQuery, type Neighbour, type VectorStore } from './vector-store';

const BEFORE = `and (e.messageat, e.messageid) < (select createdat, id from vision_messages where id = ?)`;

/**
 * pgvector: the same rows as {@link Float4Store} (so switching stores needs no new embeddings)
 * plus a `vec vector` column and an HNSW index (cosine) per dimension count, built at start.
 * PostgreSQL's planner chooses between the HNSW index and the caller's rows by visionid, so a
 * person with few messages gets an exact scan of theirs, and a large history the index.
 */
export class PgVectorStore implements VectorStore {
  readonly kind = 'pgvector' as const;
  private readonly base = new Float4Store();


  async store(on: SqlOn, model: string, rows: EmbeddingRow[]): Promise<void> {
    if (!rows.length) return;
    await this.base.store(on, model, rows);
    await queryRows(
      on,
      `update vision_message_embeddings e set vec = v.embedding::vector from vision_message_vectors v
       where v.messageid = e.messageid and e.messageid = any(?::uuid[]) and e.model = ?`,
      [uuidArray(rows.map((r) => r.messageId)), model],
    );
  }

  async nearest(on: SqlOn, q: NearestQuery): Promise<Neighbour[]> {
    if (!q.visionIds.length || q.limit <= 0) return [];
    // the index is on vec::vector(dims) where dims = <configured>: the query names both literally
    // (a parameter would hide them from the planner of a prepared statement)
    const dims = Math.floor(q.vector.length);
    const v = `?::float4[]::vector(${dims})`;
    const params: unknown[] = [float4Literal(q.vector), uuidArray(q.visionIds), q.model];
    if (q.beforeMessageId) params.push(q.beforeMessageId);
    params.push(float4Literal(q.vector));
    const rows = await queryRows<{ messageid: string; distance: number }>(
      on,
      `select e.messageid, (e.vec::vector(${dims}) <=> ${v}) as distance
       from vision_message_embeddings e
       where e.visionid = any(?::uuid[]) and e.model = ? and e.dims = ${dims} and e.vec is not null ${q.beforeMessageId ? BEFORE : ''}
       order by e.vec::vector(${dims}) <=> ${v} ${limitSql(q.limit)}`,
      params,
    );
    // ordered by distance alone (so the HNSW index can deliver the order); equal scores by id, as the float4 store does
    return rows
      .map((r) => ({ messageId: r.messageid, score: 1 - Number(r.distance) }))
      .filter((n) => n.score >= q.minScore)
      .sort((a, b) => byScore({ score: a.score, id: a.messageId }, { score: b.score, id: b.messageId }));
  }
}

/** The float4 store, with this process's sign index unless SIGN_INDEX_BYTES is 0. */
function float4Store(config: SearchConfig): Float4Store {
  return new Float4Store(config.signIndexBytes > 0 ? new SignIndex(config.signIndexBytes) : undefined);
}

/**
 * The vector store for this database, checked at start: pgvector when VECTOR_STORE is `auto` or
 * `pgvector` and the server has the extension (it is created when missing, which needs the right
 * to create it), float4 arrays otherwise. VECTOR_STORE=pgvector without the extension fails
 * the start with a clear error rather than running slower than configured.
 */
export async function prepareVectorStore(on: SqlOn, config: SearchConfig, logger: Logger): Promise<VectorStore> {
  if (config.vectorStore === 'float4') return float4Store(config);
  const [available] = await queryRows<{ installed: string | null }>(
    on,
    `select installed_version as installed from pg_available_extensions where name = 'vector'`,
    [],
  );
  if (!available) {
    if (config.vectorStore === 'pgvector') throw new Error('VECTOR_STORE=pgvector, but this PostgreSQL server has no pgvector extension');
    logger.info('pgvector is not available on this PostgreSQL server: embeddings are searched as float4 arrays');
    return float4Store(config);
  }
  const dims = config.embeddingDimensions;
  try {
    if (!available.installed) await queryRows(on, `create extension if not exists vector`, []);
    await queryRows(on, `alter table vision_message_embeddings add column if not exists vec vector`, []);
    await queryRows(
      on,
      `update vision_message_embeddings e set vec = v.embedding::vector from vision_message_vectors v where v.messageid = e.messageid and e.vec is null`,
      [],
    );
    if (dims > 0 && dims <= 2000) {
      // HNSW indexes hold one dimension count (at most 2,000): the configured one
      await queryRows(
        on,
        `create index if not exists vision_message_embeddings_vec${dims}_idx on vision_message_embeddings
         using hnsw ((vec::vector(${dims})) vector_cosine_ops) where dims = ${dims}`,
        [],
      );
    }
  } catch (err) {
    if (config.vectorStore === 'pgvector') throw err;
    logger.warn({ err }, 'pgvector could not be set up: embeddings are searched as float4 arrays');
    return float4Store(config);
  }
  logger.info({ dims }, 'embeddings are searched with pgvector (HNSW, cosine)');
  return new PgVectorStore();
}
