import { queryRows, type SqlOn, uuidArray } from '../db/sql';

/** One message's embedding to store. */
export interface EmbeddingRow {
  messageId: string;
  vector: number[];
}

export interface NearestQuery {
  /** Only messages of these visions (the caller's). */
  visionIds: readonly string[];
  model: string;
  vector: number[];
  /** How many neighbours at most. */
  limit: number;
  /** The least cosine similarity returned. */
  minScore: number;
  /** Only messages older than this one (recall: before the window). */
  beforeMessageId?: string;
}

export interface Neighbour {
  messageId: string;
  /** Cosine similarity, -1..1. */
  score: number;
}

/**
 * Where embeddings live and how the nearest are found. Two implementations behind one interface:
 * {@link Float4Store} on any PostgreSQL, and the pgvector one where the extension exists
 * (pgvector-store.ts). Both keep rows in `vision_message_embeddings`.
 */
export interface VectorStore {
  readonly kind: 'float4' | 'pgvector';
  /** Stores (or replaces) embeddings of the model for these messages. */
  store(on: SqlOn, model: string, rows: EmbeddingRow[]): Promise<void>;
  /** Best first; ties broken by message id (newest first). */
  nearest(on: SqlOn, q: NearestQuery): Promise<Neighbour[]>;
}

/** Sign bits of a vector, as a PostgreSQL bit string literal. */
export function signBits(v: readonly number[]): string {
  let s = '';
  for (const x of v) s += x > 0 ? '1' : '0';
  return s;
}

/** A float4[] literal. */
export function float4Literal(v: readonly number[]): string {
  return `{${v.map((x) => (Number.isFinite(x) ? Math.fround(x) : 0)).join(',')}}`;
}

/** Decodes `array_send(float4[])`: a 1-dimensional array's header, then (length, big-endian float4) pairs. */
export function decodeFloat4Send(buf: Buffer): Float32Array {
  const ndim = buf.readInt32BE(0);
  if (ndim === 0) return new Float32Array(0);
  const n = buf.readInt32BE(12);
  const out = new Float32Array(n);
  let off = 20;
  for (let i = 0; i < n; i++) {
    out[i] = buf.readFloatBE(off + 4);
    off += 8;
  }
  return out;
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i]!;
    const y = b[i]!;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

const BEFORE = `and (e.messageat, e.messageid) < (select createdat, id from vision_messages where id = ?)`;

/**
 * Float4 arrays in plain PostgreSQL. The scan is limited to the caller's visions (an index on
 * visionid): first by the Hamming distance of the vectors' sign bits (`bit_count(signs # q)`,
 * native bit operations over narrow rows: the arrays themselves live in TOAST), then the
 * shortlist of the nearest `max(8 × limit, 400)` is ranked by exact cosine similarity. For up
 * to that many candidate messages the ranking is exact; beyond, sign agreement decides which
 * messages are compared exactly (binary quantization with rescoring).
 */
export class Float4Store implements VectorStore {
  readonly kind = 'float4' as const;

  async store(on: SqlOn, model: string, rows: EmbeddingRow[]): Promise<void> {
    if (!rows.length) return;
    await queryRows(
      on,
      `insert into vision_message_embeddings (messageid, visionid, messageat, model, dims, embedding, signs)
       select m.id, m.visionid, m.createdat, ?, cardinality(e.v::float4[]), e.v::float4[], e.s::bit varying
       from unnest(?::uuid[], ?::text[], ?::text[]) as e(id, v, s) join vision_messages m on m.id = e.id
       on conflict (messageid) do update set model = excluded.model, dims = excluded.dims, embedding = excluded.embedding,
         signs = excluded.signs, createdat = now()`,
      [
        model,
        uuidArray(rows.map((r) => r.messageId)),
        `{${rows.map((r) => `"${float4Literal(r.vector)}"`).join(',')}}`,
        `{${rows.map((r) => signBits(r.vector)).join(',')}}`,
      ],
    );
  }

  async nearest(on: SqlOn, q: NearestQuery): Promise<Neighbour[]> {
    if (!q.visionIds.length || q.limit <= 0) return [];
    const params: unknown[] = [uuidArray(q.visionIds), q.model, q.vector.length];
    if (q.beforeMessageId) params.push(q.beforeMessageId);
    params.push(signBits(q.vector), Math.max(8 * q.limit, 400));
    const rows = await queryRows<{ messageid: string; v: Buffer }>(
      on,
      `select e.messageid, array_send(e.embedding) as v from vision_message_embeddings e
       where e.visionid = any(?::uuid[]) and e.model = ? and e.dims = ? ${q.beforeMessageId ? BEFORE : ''}
       order by bit_count(e.signs # ?::bit varying), e.messageid desc limit ?`,
      params,
    );
    const scored: Neighbour[] = [];
    for (const r of rows) {
      const score = cosine(q.vector, decodeFloat4Send(r.v));
      if (score >= q.minScore) scored.push({ messageId: r.messageid, score });
    }
    scored.sort((a, b) => b.score - a.score || (a.messageId < b.messageId ? 1 : a.messageId > b.messageId ? -1 : 0));
    return scored.slice(0, q.limit);
  }
}
