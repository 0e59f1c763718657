import type { Redis } from 'ioredis';

/** Channels per SUBSCRIBE when a connection subscribes everything again. */
const SUBSCRIBE_BATCH = 1000;
/** After a failed SUBSCRIBE on a connection that stayed up, when to try once more. */
const RESUBSCRIBE_DELAY_MS = 1000;

type Listener = ((event: Event) => void) | { handleEvent(event: Event): void };

export interface RedisEventTarget extends EventTarget {
  /** Detaches from the connections (they are closed by their owner). */
  close(): void;
}

/**
 * An EventTarget over Redis pub/sub (JSON payloads), in place of `@graphql-yoga/redis-event-target`,
 * which sends SUBSCRIBE once, when a channel gets its first listener: a SUBSCRIBE that fails during
 * an outage is never sent again (ioredis resubscribes only what it had confirmed), so a subscription
 * started during an outage stays deaf, and its failed commands were unhandled rejections.
 *
 * This one keeps the channels that have listeners and subscribes all of them on every `ready` of
 * the subscribing connection (built with `autoResubscribe: false`), again after a failed SUBSCRIBE,
 * and never awaits or throws for Redis: a failed PUBLISH or SUBSCRIBE goes to `onError`.
 */
export function createRedisEventTarget(opts: {
  publishClient: Redis;
  subscribeClient: Redis;
  onError: (err: unknown, command: 'publish' | 'subscribe') => void;
}): RedisEventTarget {
  const { publishClient: pub, subscribeClient: sub, onError } = opts;
  const listeners = new Map<string, Set<Listener>>();
  let retry: NodeJS.Timeout | undefined;
  let closed = false;

  const subscribe = (channels: string[]) => {
    // not ready: the next `ready` subscribes every wanted channel
    if (closed || sub.status !== 'ready') return;
    for (let i = 0; i < channels.length; i += SUBSCRIBE_BATCH) {
      sub.subscribe(...channels.slice(i, i + SUBSCRIBE_BATCH)).catch((err: unknown) => {
        onError(err, 'subscribe');
        retry ??= setTimeout(() => {
          retry = undefined;
          subscribe([...listeners.keys()]);
        }, RESUBSCRIBE_DELAY_MS).unref();
      });
    }
  };
  const onReady = () => subscribe([...listeners.keys()]);
  const onMessage = (channel: string, message: string) => {
    const set = listeners.get(channel);
    if (!set) return;
    let detail: unknown;
    try {
      detail = message === '' ? null : JSON.parse(message);
    } catch {
      return; // not ours: every payload we publish is JSON
    }
    const event = new CustomEvent(channel, { detail });
    for (const l of set) {
      if (typeof l === 'function') l(event);
      else l.handleEvent(event);
    }
  };
  sub.on('ready', onReady);
  sub.on('message', onMessage);

  return {
    addEventListener(type: string, listener: Listener | null) {
      if (!listener) return;
      let set = listeners.get(type);
      if (!set) {
        set = new Set();
        listeners.set(type, set);
        subscribe([type]);
      }
      set.add(listener);
    },
    removeEventListener(type: string, listener: Listener | null) {
      const set = listeners.get(type);
      if (!set || !listener || !set.delete(listener) || set.size > 0) return;
      listeners.delete(type);
      // sent after any SUBSCRIBE of the channel on the same connection, so it wins; when it fails,
      // the channel's messages only reach no one (and the next connection does not subscribe it)
      if (sub.status === 'ready') sub.unsubscribe(type).catch(() => undefined);
    },
    dispatchEvent(event: Event) {
      const detail = (event as CustomEvent).detail as unknown;
      pub.publish(event.type, detail === undefined ? '' : JSON.stringify(detail)).catch((err: unknown) => onError(err, 'publish'));
      return true;
    },
    close() {
      closed = true;
      clearTimeout(retry);
      sub.off('ready', onReady);
      sub.off('message', onMessage);
    },
  };
}
