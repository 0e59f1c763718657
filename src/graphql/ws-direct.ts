import type { ExecutionResult, FormattedExecutionResult } from 'graphql';
import type { WebSocket } from 'ws';
import { isForwardable, MAX_PENDING, type Forwardable } from './pubsub';
import { SharedSubscription } from './subscriptions';

/**
 * Subscription events written straight to the socket, in the publisher's dispatch: the fan-out
 * of one event to thousands of subscribers is one synchronous loop, not a chain of promises per
 * subscriber through graphql-ws (its `for await`, `onNext`, `next` message built, validated and
 * stringified again for each). The `next` payload of a shared result is serialized once for all
 * its subscribers; each socket gets it behind its own operation id.
 *
 * graphql-ws keeps everything else: it starts the operation, holds this object as the running
 * subscription, calls `return()` on `complete` or close, and sends the `error` when `next()`
 * rejects (a failed execution, or a socket that cannot keep up) and the `complete` when it ends.
 */
export interface DirectOptions {
  /** A result with errors as the client must see it; undefined: the result as it is. */
  format(result: ExecutionResult): FormattedExecutionResult | undefined;
  /** Bytes a socket may hold unsent before a further event ends its subscription with an error. */
  maxBufferedBytes: number;
}

/** The serialized payload of each shared result (results live as long as their event). */
const payloads = new WeakMap<object, string>();

const DONE: IteratorResult<never, void> = Object.freeze({ value: undefined, done: true });

/**
 * The graphql-ws `onOperation` replacement for a subscription that can be delivered directly
 * (a shared subscription over a forwardable pub/sub source); undefined for any other result.
 */
export function deliverDirectly(result: unknown, socket: WebSocket, id: string, opts: DirectOptions): DirectDelivery | undefined {
  if (!(result instanceof SharedSubscription) || !isForwardable(result.source)) return undefined;
  return new DirectDelivery(result as SharedSubscription<unknown, ExecutionResult>, socket, id, opts);
}

export class DirectDelivery {
  private started = false;
  private finished = false;
  private settle?: { resolve(r: IteratorResult<never, void>): void; reject(err: unknown): void };
  private readonly ended: Promise<IteratorResult<never, void>>;
  /** Results behind one that is still a promise, in order; undefined when none waits. */
  private queue?: (ExecutionResult | Promise<ExecutionResult>)[];
  private readonly prefix: string;

  constructor(
    private readonly sub: SharedSubscription<unknown, ExecutionResult>,
    private readonly socket: WebSocket,
    id: string,
    private readonly opts: DirectOptions,
  ) {
    this.prefix = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
    this.ended = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    // graphql-ws awaits it from its first `next()`; an end before that is no unhandled rejection
    this.ended.catch(() => undefined);
  }

  /** graphql-ws calls it once it holds this subscription: events flow from then on; resolves when it ends. */
  next(): Promise<IteratorResult<never, void>> {
    if (!this.started) {
      this.started = true;
      if (!(this.sub.source as unknown as Forwardable).forward(this.deliver)) {
        // ended before it started (e.g. fell behind while being set up): as the source says
        this.finished = true;
        this.sub.source.next().then(() => this.settle!.resolve(DONE), (err: unknown) => this.settle!.reject(err));
      }
    }
    return this.ended;
  }

  return(): Promise<IteratorResult<never, void>> {
    this.end();
    this.settle!.resolve(DONE);
    return Promise.resolve(DONE);
  }

  throw(err: unknown): Promise<IteratorResult<never, void>> {
    this.fail(err);
    return Promise.reject(err);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** The source's sink: called by the publisher's dispatch, so it never throws. */
  private readonly deliver = (event: unknown): void => {
    if (this.finished) return;
    let result: ExecutionResult | Promise<ExecutionResult>;
    try {
      result = this.sub.run(event);
    } catch (err) {
      return this.fail(err);
    }
    if (this.queue || isPromise(result)) {
      // in order behind an execution still running
      if (!this.queue) {
        this.queue = [result];
        void this.drain();
      } else if (this.queue.length >= MAX_PENDING) {
        this.fail(new Error(`subscriber fell more than ${MAX_PENDING} events behind`));
      } else {
        this.queue.push(result);
      }
      return;
    }
    try {
      this.write(result);
    } catch (err) {
      // e.g. a result JSON cannot represent: this subscription's error, never the dispatch's
      this.fail(err);
    }
  };

  private async drain(): Promise<void> {
    while (this.queue?.length && !this.finished) {
      try {
        this.write(await this.queue[0]!);
      } catch (err) {
        return this.fail(err);
      }
      this.queue?.shift();
    }
    this.queue = undefined;
  }

  private write(result: ExecutionResult): void {
    const { socket } = this;
    if (this.finished || socket.readyState !== socket.OPEN) return;
    if (socket.bufferedAmount > this.opts.maxBufferedBytes) {
      return this.fail(new Error(`subscriber fell more than ${this.opts.maxBufferedBytes} bytes behind`));
    }
    let payload = payloads.get(result);
    if (payload === undefined) {
      payload = JSON.stringify(this.opts.format(result) ?? result);
      payloads.set(result, payload);
    }
    socket.send(this.prefix + payload + '}');
  }

  private end(): void {
    if (this.finished) return;
    this.finished = true;
    this.queue = undefined;
    void this.sub.return().catch(() => undefined);
  }

  private fail(err: unknown): void {
    if (this.finished) return;
    this.end();
    this.settle!.reject(err);
  }
}

function isPromise(v: unknown): v is Promise<ExecutionResult> {
  return typeof (v as Promise<unknown> | undefined)?.then === 'function';
}
