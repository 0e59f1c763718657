import { queryRows, type SqlOn, uuidArray } from '../db/sql';

/**
 * The sign bits of each vision's embeddings, kept in this process so the float4 store's
 * shortlist (the nearest by Hamming distance of sign bits) is computed here instead of by a scan
 * in PostgreSQL (about 5 ms for 10,000 messages, 35 ms for 100,000, on the team's machines).
 *
 * PostgreSQL stays the source of truth: the index only proposes message ids. Before every use
 * it reads, per vision, the embedding rows written since its last read (an index on
 * `(visionid, createdat)`; from 5 s before that read, for rows committed late), and the
 * vectors of the shortlisted ids are then read with the model, size and vision checked in SQL, so
 * a message deleted meanwhile or embedded by another model is never ranked (it also leaves the
 * index). Several instances each keep their own index; none depends on another's. Memory is
 * bounded by `maxBytes` (least recently used visions are forgotten first).
 */
export class SignIndex {
  private readonly visions = new Map<string, VisionSigns>();
  private readonly inflight = new Map<string, Promise<void>>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** Bytes held now (approximate: ids, times and sign words). */
  get size(): number {
    return this.bytes;
  }

  /**
   * Brings the visions' entries up to date (one statement for all of them) unless each was
   * refreshed less than `freshWithinMs` ago.
   */
  async refresh(on: SqlOn, visionIds: readonly string[], model: string, dims: number, freshWithinMs = 0): Promise<void> {
    const now = Date.now();
    const due: string[] = [];
    const waits: Promise<void>[] = [];
    for (const id of visionIds) {
      const k = key(id, model, dims);
      const v = this.visions.get(k);
      if (v && now - v.refreshedAt <= freshWithinMs) continue;
      // a read already under way serves a caller that accepts some age (recall after its warm-up)
      const running = freshWithinMs > 0 ? this.inflight.get(k) : undefined;
      if (running) waits.push(running);
      else due.push(id);
    }
    if (due.length) {
      const read = this.read(on, due, model, dims, now);
      const keys = due.map((id) => key(id, model, dims));
      for (const k of keys) this.inflight.set(k, read);
      try {
        await read;
      } finally {
        for (const k of keys) if (this.inflight.get(k) === read) this.inflight.delete(k);
      }
    }
    await Promise.all(waits);
  }

  private async read(on: SqlOn, due: string[], model: string, dims: number, now: number): Promise<void> {
    const since = due.map((id) => this.visions.get(key(id, model, dims))?.watermark ?? 0);
    // `t`: the database's time of this read; the left join keeps one row when nothing is new
    const rows = await queryRows<{ t: string; visionid: string | null; messageid: string; at: string; s: string }>(
      on,
      `select (extract(epoch from now()) * 1000000)::int8::text as t, x.*
       from (select 1) as one left join lateral (
         select w.visionid, e.messageid, (extract(epoch from e.messageat) * 1000000)::int8::text as at, e.signs::text as s
         from unnest(?::uuid[], ?::int8[]) as w(visionid, since)
         join lateral (
           select messageid, messageat, signs from vision_message_embeddings e
           where e.visionid = w.visionid and e.createdat > to_timestamp(w.since / 1000000.0) and e.model = ? and e.dims = ?
         ) e on true
       ) x on true`,
      [uuidArray(due), `{${since.join(',')}}`, model, dims],
    );
    // a row's createdat is its statement's start: one that started before this read but committed
    // after it is not seen now, so the next read starts 5 s before this one (embedding writes are
    // single statements, far shorter)
    const watermark = Number(rows[0]!.t) - 5_000_000;
    const byVision = new Map<string, typeof rows>();
    for (const r of rows) {
      if (!r.visionid) continue;
      const list = byVision.get(r.visionid) ?? [];
      list.push(r);
      byVision.set(r.visionid, list);
    }
    for (const id of due) {
      const k = key(id, model, dims);
      let v = this.visions.get(k);
      if (!v) {
        v = new VisionSigns(dims);
        this.visions.set(k, v);
      }
      const before = v.bytes;
      for (const r of byVision.get(id) ?? []) v.upsert(r.messageid, Number(r.at), r.s);
      v.watermark = watermark;
      v.refreshedAt = now;
      this.touch(k, v, v.bytes - before);
    }
  }

  /**
   * The `limit` messages of these visions whose sign bits are nearest to the query's (ties: the
   * larger id first), among messages before `before` (time in microseconds, then id) when given.
   * Call {@link refresh} first.
   */
  shortlist(q: {
    visionIds: readonly string[];
    model: string;
    dims: number;
    vector: readonly number[];
    limit: number;
    before?: { at: number; id: string };
    /** Messages left out (recall's window when its floor is not in the index). */
    exclude?: ReadonlySet<string>;
  }): string[] {
    const words = Math.ceil(q.dims / 32);
    const query = new Uint32Array(words);
    for (let i = 0; i < q.dims; i++) if ((q.vector[i] ?? 0) > 0) query[i >>> 5]! |= 1 << (i & 31);
    const b = q.before;
    const list: VisionSigns[] = [];
    let total = 0;
    for (const id of q.visionIds) {
      const v = this.visions.get(key(id, q.model, q.dims));
      if (v) {
        list.push(v);
        total += v.count;
      }
    }
    // pass 1: every distance (EXCLUDED for dead or too recent messages) and how many at each
    const EXCLUDED = 0xffff;
    const dist = new Uint16Array(total);
    const counts = new Uint32Array(q.dims + 1);
    let n = 0;
    for (const v of list) {
      for (let i = 0; i < v.count; i++, n++) {
        if (v.dead[i] || (b && (v.at[i]! > b.at || (v.at[i] === b.at && v.ids[i]! >= b.id))) || q.exclude?.has(v.ids[i]!)) {
          dist[n] = EXCLUDED;
          continue;
        }
        let d = 0;
        for (let w = 0, o = i * words; w < words; w++) d += popcount(v.signs[o + w]! ^ query[w]!);
        dist[n] = d;
        counts[d]!++;
      }
    }
    // the distance at which `limit` is reached; pass 2: those below it, then the largest ids at it
    let cut = 0;
    for (let seen = 0; cut <= q.dims; cut++) if ((seen += counts[cut]!) >= q.limit) break;
    const out: string[] = [];
    const atCut: string[] = [];
    n = 0;
    for (const v of list) {
      for (let i = 0; i < v.count; i++, n++) {
        if (dist[n]! < cut) out.push(v.ids[i]!);
        else if (dist[n] === cut) atCut.push(v.ids[i]!);
      }
    }
    atCut.sort((x, y) => (x < y ? 1 : x > y ? -1 : 0));
    return out.concat(atCut.slice(0, Math.max(0, q.limit - out.length)));
  }

  /** A message's time (microseconds) when the index holds it. */
  timeOf(visionIds: readonly string[], model: string, dims: number, messageId: string): number | undefined {
    for (const id of visionIds) {
      const at = this.visions.get(key(id, model, dims))?.timeOf(messageId);
      if (at !== undefined) return at;
    }
    return undefined;
  }

  /** Forgets messages that PostgreSQL no longer has (deleted, or embedded by another model meanwhile). */
  forget(visionIds: readonly string[], model: string, dims: number, messageIds: readonly string[]): void {
    const gone = new Set(messageIds);
    for (const id of visionIds) this.visions.get(key(id, model, dims))?.forget(gone);
  }

  private touch(k: string, v: VisionSigns, grew: number): void {
    // Map order is recency: re-inserting moves the vision to the end
    this.visions.delete(k);
    this.visions.set(k, v);
    this.bytes += grew;
    for (const [oldest, entry] of this.visions) {
      if (this.bytes <= this.maxBytes || oldest === k) break;
      this.visions.delete(oldest);
      this.bytes -= entry.bytes;
    }
  }
}

const key = (visionId: string, model: string, dims: number) => `${visionId}\u0000${model}\u0000${dims}`;

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** One vision's entries under one model: parallel arrays that grow by doubling. */
class VisionSigns {
  count = 0;
  ids: string[] = [];
  at = new Float64Array(64);
  signs: Uint32Array;
  dead = new Uint8Array(64);
  /** Rows created after this (microseconds) are read next time: 5 s before the last read. */
  watermark = 0;
  refreshedAt = 0;
  private readonly slot = new Map<string, number>();
  private readonly words: number;

  constructor(dims: number) {
    this.words = Math.ceil(dims / 32);
    this.signs = new Uint32Array(64 * this.words);
  }

  get bytes(): number {
    // the id string and its map entry, the time, the sign words, the flag
    return this.count * (120 + 8 + 4 * this.words + 1);
  }

  upsert(id: string, at: number, bits: string): void {
    let i = this.slot.get(id);
    if (i === undefined) {
      i = this.count++;
      if (i === this.at.length) this.grow();
      this.ids[i] = id;
      this.slot.set(id, i);
    }
    this.at[i] = at;
    this.dead[i] = 0;
    const o = i * this.words;
    this.signs.fill(0, o, o + this.words);
    for (let b = 0; b < bits.length; b++) if (bits.charCodeAt(b) === 49) this.signs[o + (b >>> 5)]! |= 1 << (b & 31);
  }

  timeOf(id: string): number | undefined {
    const i = this.slot.get(id);
    return i === undefined ? undefined : this.at[i];
  }

  forget(gone: Set<string>): void {
    for (const id of gone) {
      const i = this.slot.get(id);
      if (i !== undefined) this.dead[i] = 1;
    }
  }

  private grow(): void {
    const n = this.at.length * 2;
    const at = new Float64Array(n);
    at.set(this.at);
    this.at = at;
    const dead = new Uint8Array(n);
    dead.set(this.dead);
    this.dead = dead;
    const signs = new Uint32Array(n * this.words);
    signs.set(this.signs);
    this.signs = signs;
  }
}
