/**
 * The abort signal of one model call: aborted by the caller's signal (also when it was aborted
 * before the call) or when `timeoutMs` passes. `dispose()` when the call ends.
 */
export function callDeadline(caller: AbortSignal | undefined, timeoutMs: number, what: string) {
  const ac = new AbortController();
  const onAbort = () => ac.abort(caller?.reason);
  if (caller?.aborted) ac.abort(caller.reason);
  else caller?.addEventListener('abort', onAbort, { once: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort(new Error(`${what} timed out`));
  }, timeoutMs);
  return {
    signal: ac.signal,
    get timedOut() {
      return timedOut;
    },
    dispose() {
      clearTimeout(timer);
      caller?.removeEventListener('abort', onAbort);
    },
  };
}
