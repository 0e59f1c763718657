import type { ServerResponse } from 'node:http';
import type { Logger } from '../logger';

/**
 * Bytes a response may hold unsent before its client counts as stalled and the stream is cut:
 * a reply's chunks are a few bytes each, so a client this far behind is not reading. It comes
 * back with `afterSeq` like after any other drop.
 */
const SLOW_CLIENT_BYTES = 1024 * 1024;

/** How long {@link SseStreams.close} waits for streams to end before it cuts their sockets. */
const CLOSE_WAIT_MS = 1000;

/** A stream registered in the single connection mode (PUT), by its token. */
interface Reservation {
  userId: string;
  /** Operations running on it, by the client's operation id. */
  ops: Set<string>;
  connected: boolean;
  /** Ends a reservation that is not connected in time. */
  timer?: NodeJS.Timeout;
}

interface OpenStream {
  body: AsyncGenerator<string, void, undefined>;
  res: ServerResponse;
  done?: Promise<void>;
}

/**
 * What the GraphQL over SSE route keeps about its streams: how many each user holds (a distinct
 * operation's stream, or a registered single connection stream from its PUT on), the operations
 * of each single connection stream, and every open response, so that they can be ended when the
 * server stops.
 */
export class SseStreams {
  private readonly perUser = new Map<string, number>();
  private readonly reservations = new Map<string, Reservation>();
  private readonly open = new Set<OpenStream>();

  constructor(
    private readonly opts: {
      /** Streams a user may hold at once on this instance (MAX_WS_PER_USER). */
      maxPerUser: number;
      /** Operations one single connection stream may run at once (MAX_SUBSCRIPTIONS_PER_CONNECTION). */
      maxOpsPerStream: number;
      /** How long a registered stream may stay unconnected (WS_INIT_TIMEOUT_MS). */
      connectTimeoutMs: number;
      /** Ends a registered stream in the graphql-sse handler (which keeps its own map of them). */
      dispose(token: string): Promise<void>;
      logger: Logger;
    },
  ) {}

  /** Event streams being written now. */
  get openCount(): number {
    return this.open.size;
  }

  /** Takes one of the user's stream slots; false when the user holds the most already. */
  take(userId: string): boolean {
    const n = this.perUser.get(userId) ?? 0;
    if (n >= this.opts.maxPerUser) return false;
    this.perUser.set(userId, n + 1);
    return true;
  }

  release(userId: string): void {
    const n = (this.perUser.get(userId) ?? 1) - 1;
    if (n > 0) this.perUser.set(userId, n);
    else this.perUser.delete(userId);
  }

  /** A stream registered by a PUT keeps the slot the PUT took until it ends (or is never connected). */
  reserve(token: string, userId: string): void {
    const r: Reservation = { userId, ops: new Set(), connected: false };
    r.timer = setTimeout(() => {
      if (this.reservations.get(token) !== r || r.connected) return;
      this.end(token);
      this.opts.dispose(token).catch((err) => this.opts.logger.error({ err }, 'internal error ending an unconnected event stream'));
    }, this.opts.connectTimeoutMs);
    r.timer.unref();
    this.reservations.set(token, r);
  }

  /** The user who registered a stream, while it lives. */
  ownerOf(token: string): string | undefined {
    return this.reservations.get(token)?.userId;
  }

  connected(token: string): void {
    const r = this.reservations.get(token);
    if (!r) return;
    r.connected = true;
    clearTimeout(r.timer);
  }

  /** A registered stream is gone: its slot is free again. */
  end(token: string): void {
    const r = this.reservations.get(token);
    if (!r) return;
    clearTimeout(r.timer);
    this.reservations.delete(token);
    this.release(r.userId);
  }

  /** Counts an operation on a registered stream; false when the stream runs the most already (or is gone). */
  admitOp(token: string, opId: string): boolean {
    const r = this.reservations.get(token);
    if (!r || r.ops.size >= this.opts.maxOpsPerStream) return false;
    r.ops.add(opId);
    return true;
  }

  opEnded(token: string, opId: string): void {
    this.reservations.get(token)?.ops.delete(opId);
  }

  /**
   * Writes an event stream to its response until either ends; `onEnd` runs once after. A
   * client that stops reading is cut at {@link SLOW_CLIENT_BYTES} instead of buffered for.
   */
  pipe(body: AsyncGenerator<string, void, undefined>, res: ServerResponse, onEnd: () => void): Promise<void> {
    const stream: OpenStream = { body, res };
    // the client went away: the handler completes the stream's operations (their subscriptions end)
    const stop = () => void body.return(undefined).catch(() => undefined);
    res.once('close', stop);
    this.open.add(stream);
    stream.done = (async () => {
      try {
        // closed while the operation was prepared: its 'close' has fired already
        if (res.destroyed || res.socket?.destroyed) stop();
        for await (const chunk of body) {
          if (res.destroyed || res.writableEnded) break;
          res.write(chunk);
          if (res.writableLength > SLOW_CLIENT_BYTES) {
            this.opts.logger.warn({ buffered: res.writableLength }, 'event stream client stopped reading: stream cut');
            res.destroy();
            break;
          }
        }
      } catch (err) {
        this.opts.logger.error({ err }, 'internal error in a GraphQL over SSE stream');
      } finally {
        res.off('close', stop);
        this.open.delete(stream);
        onEnd();
        if (!res.writableEnded && !res.destroyed) res.end();
      }
    })();
    return stream.done;
  }

  /**
   * Ends every stream: registered ones never connected, and open ones (their operations complete
   * and the response ends, so the HTTP server can drain). graphql-sse clients take a stream that
   * ends with operations still running for a network error and reconnect (elsewhere).
   */
  async close(): Promise<void> {
    const unconnected = [...this.reservations].filter(([, r]) => !r.connected).map(([token]) => token);
    for (const token of unconnected) this.end(token);
    await Promise.all(unconnected.map((token) => this.opts.dispose(token).catch(() => undefined)));
    const streams = [...this.open];
    for (const s of streams) void s.body.return(undefined).catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(streams.map((s) => s.done)),
      new Promise<void>((r) => (timer = setTimeout(r, CLOSE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    for (const s of this.open) s.res.destroy();
  }
}
