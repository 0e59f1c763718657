import { limitSql, queryRows, type SqlOn, uuidArray } from '../db/sql';
import type { SignIndex } from './sign-index';

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
  /**
   * How old this process's sign index may be (float4 store with an index): recall, which warms
   * it while the message is embedded, accepts a second; a search reads what was embedded up to now.
   * @default 0
   */
  freshWithinMs?: number;
  /**
   * Every message from `beforeMessageId` on, when the caller knows them (recall: the window's
   * candidates): the sign index then leaves them out without looking up the floor's time.
   */
  windowIds?: readonly string[];
  /**
   * Read each neighbour's message in the statement that reads its vector (where the store can):
   * `columns` of `vision_messages m`, and `eligible`, the condition a message must meet (an
   * ineligible one is not returned). Neighbours then carry `row`.
   */
  withMessages?: { columns: string; eligible: string };
}

export interface Neighbour {
  messageId: string;
  /** Cosine similarity, -1..1. */
  score: number;
  /** The message's row, when asked for with `withMessages` and the store could. */
  row?: Record<string, unknown>;
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
  /**
   * Gets ready to answer for these visions soon (the float4 store's sign index reads what is
   * new, unless it did less than `freshWithinMs` ago).
   */
  warm?(on: SqlOn, visionIds: readonly string[], model: string, dims: number, freshWithinMs?: number): Promise<void>;
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
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.getInt32(0) === 0) return new Float32Array(0);
  const n = view.getInt32(12);
  const out = new Float32Array(n);
  for (let i = 0, off = 24; i < n; i++, off += 8) out[i] = view.getFloat32(off);
  return out;
}

/** Best first; equal scores by id, newest (largest UUIDv7) first: one order for every ranking of this module. */
export function byScore(a: { score: number; id: string }, b: { score: number; id: string }): number {
  return b.score - a.score || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
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

/**
 * How many messages the sign bits shortlist for exact ranking (binary quantization keeps the
 * true nearest within a few times k): four times a small k (recall's 5: 20), at least 20,
 * twice a large one (a search's depth: the tail of a 200-deep ranking weighs little, and each
 * shortlisted vector costs a lookup and 2 KB on the wire).
 */
export function shortlistSize(limit: number): number {
  return Math.max(20, Math.min(4 * limit, 100 + 2 * limit));
}

const BEFORE = `and (e.messageat, e.messageid) < (select createdat, id from vision_messages where id = ?)`;

/**
 * Float4 arrays in plain PostgreSQL. The scan is limited to the caller's visions (an index on
 * visionid): first by the Hamming distance of the vectors' sign bits (`bit_count(signs # q)`,
 * native bit operations over narrow rows: the arrays live in `vision_message_vectors`), then the
 * shortlist of the nearest {@link shortlistSize} is ranked by exact cosine similarity. For up
 * to that many candidate messages the ranking is exact; beyond, sign agreement decides which
 * messages are compared exactly (binary quantization with rescoring).
 */
export class Float4Store implements VectorStore {
  readonly kind = 'float4' as const;

  /** `index`: this process's sign bits of the embeddings (SIGN_INDEX_BYTES); without it the shortlist is a scan in PostgreSQL. */
  constructor(private readonly index?: SignIndex) {}

  async warm(on: SqlOn, visionIds: readonly string[], model: string, dims: number, freshWithinMs = 0): Promise<void> {
    if (this.index && dims > 0) await this.index.refresh(on, visionIds, model, dims, freshWithinMs);
  }

  async store(on: SqlOn, model: string, rows: EmbeddingRow[]): Promise<void> {
    if (!rows.length) return;
    await queryRows(
      on,
      `with input as (
         select m.id, m.visionid, m.createdat, e.v::float4[] as v, e.s::bit varying as s
         from unnest(?::uuid[], ?::text[], ?::text[]) as e(id, v, s) join vision_messages m on m.id = e.id
       ), stored as (
         insert into vision_message_embeddings (messageid, visionid, messageat, model, dims, signs)
         select id, visionid, createdat, ?, cardinality(v), s from input
         on conflict (messageid) do update set model = excluded.model, dims = excluded.dims, signs = excluded.signs, createdat = now()
         returning messageid
       )
       insert into vision_message_vectors (messageid, embedding)
       select i.id, i.v from input i join stored on stored.messageid = i.id
       on conflict (messageid) do update set embedding = excluded.embedding`,
      [
        uuidArray(rows.map((r) => r.messageId)),
        `{${rows.map((r) => `"${float4Literal(r.vector)}"`).join(',')}}`,
        `{${rows.map((r) => signBits(r.vector)).join(',')}}`,
        model,
      ],
    );
  }

  async nearest(on: SqlOn, q: NearestQuery): Promise<Neighbour[]> {
    if (!q.visionIds.length || q.limit <= 0) return [];
    if (this.index) return this.nearestByIndex(on, this.index, q);
    const params: unknown[] = [uuidArray(q.visionIds), q.model, q.vector.length];
    if (q.beforeMessageId) params.push(q.beforeMessageId);
    params.push(signBits(q.vector));
    // the shortlist first (narrow rows, nothing but ids leaves the scan), then its vectors
    const rows = await queryRows<{ messageid: string; v: Buffer }>(
      on,
      `with shortlist as (
         select e.messageid from vision_message_embeddings e
         where e.visionid = any(?::uuid[]) and e.model = ? and e.dims = ? ${q.beforeMessageId ? BEFORE : ''}
         order by bit_count(e.signs # ?::bit varying), e.messageid desc ${limitSql(shortlistSize(q.limit))}
       )
       select s.messageid, (select array_send(v.embedding) from vision_message_vectors v where v.messageid = s.messageid) as v from shortlist s`,
      params,
    );
    const scored: Neighbour[] = [];
    for (const r of rows) {
      if (!r.v) continue; // removed meanwhile
      const score = cosine(q.vector, decodeFloat4Send(r.v));
      if (score >= q.minScore) scored.push({ messageId: r.messageid, score });
    }
    scored.sort((a, b) => byScore({ score: a.score, id: a.messageId }, { score: b.score, id: b.messageId }));
    return scored.slice(0, q.limit);
  }

  /**
   * The shortlist from the sign index (brought up to date first), then the same exact ranking.
   * The vectors are read with the vision, model and size checked in SQL: an id the index still
   * holds but PostgreSQL no longer has (deleted, re-embedded by another model) is dropped from the
   * index, and the next ones are read in its place.
   */
  private async nearestByIndex(on: SqlOn, index: SignIndex, q: NearestQuery): Promise<Neighbour[]> {
    const dims = q.vector.length;
    // the window's ids stand for the floor: no lookup of its time (recall), else the floor is read
    const exclude = q.beforeMessageId && q.windowIds ? new Set(q.windowIds) : undefined;
    const [, floor] = await Promise.all([
      index.refresh(on, q.visionIds, q.model, dims, q.freshWithinMs ?? 0),
      q.beforeMessageId && !exclude
        ? queryRows<{ at: string; id: string }>(on, `select (extract(epoch from createdat) * 1000000)::int8::text as at, id from vision_messages where id = ?`, [q.beforeMessageId])
        : Promise.resolve(undefined),
    ]);
    if (q.beforeMessageId && !exclude && !floor?.length) return [];
    let before = floor?.[0] ? { at: Number(floor[0].at), id: floor[0].id } : undefined;
    // the floor's time from the index when it holds the floor (usually: it is old enough to be embedded)
    const floorAt = exclude ? index.timeOf(q.visionIds, q.model, dims, q.beforeMessageId!) : undefined;
    if (floorAt !== undefined) before = { at: floorAt, id: q.beforeMessageId! };
    const skip = floorAt === undefined ? exclude : undefined;
    const want = shortlistSize(q.limit);
    const m = q.withMessages;
    const scored: Neighbour[] = [];
    const seen = new Set<string>();
    for (let round = 0; round < 3; round++) {
      const ids = index.shortlist({ visionIds: q.visionIds, model: q.model, dims, vector: q.vector, limit: want, before, exclude: skip }).filter((id) => !seen.has(id));
      if (!ids.length) break;
      const rows = await queryRows<Record<string, unknown> & { messageid: string; v: Buffer; _eligible?: boolean }>(
        on,
        `select v.messageid, array_send(v.embedding) as v${m ? `, ${m.columns}, (${m.eligible}) as _eligible` : ''}
         from vision_message_vectors v join vision_message_embeddings e on e.messageid = v.messageid
         ${m ? 'join vision_messages m on m.id = v.messageid' : ''}
         where v.messageid = any(?::uuid[]) and e.visionid = any(?::uuid[]) and e.model = ? and e.dims = ?`,
        [uuidArray(ids), uuidArray(q.visionIds), q.model, dims],
      );
      for (const id of ids) seen.add(id);
      for (const r of rows) {
        if (m && !r._eligible) continue;
        const score = cosine(q.vector, decodeFloat4Send(r.v));
        if (score < q.minScore) continue;
        if (!m) scored.push({ messageId: r.messageid, score });
        else {
          const { messageid, v, _eligible, ...row } = r;
          scored.push({ messageId: messageid, score, row });
        }
      }
      if (rows.length === ids.length) break;
      const found = new Set(rows.map((r) => r.messageid));
      index.forget(q.visionIds, q.model, dims, ids.filter((id) => !found.has(id)));
    }
    scored.sort((a, b) => byScore({ score: a.score, id: a.messageId }, { score: b.score, id: b.messageId }));
    return scored.slice(0, q.limit);
  }
}
