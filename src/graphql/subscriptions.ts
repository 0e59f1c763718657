import {
  createSourceEventStream,
  execute,
  GraphQLError,
  parse,
  validate,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLSchema,
  type ValidationRule,
} from 'graphql';

/** What {@link DocumentCache.load} gives: a valid document, or why there is none. */
export type LoadedDocument =
  | { document: DocumentNode; errors?: undefined; phase?: undefined }
  | { document?: undefined; errors: readonly GraphQLError[]; phase: 'parse' | 'validation' };

/**
 * Valid documents by text, shared by every WebSocket operation that sends the same text: a client
 * fleet sends a handful of distinct documents, and a parsed document is several KB per operation
 * otherwise. Only a text that parsed within the token limit and passed validation is kept, so
 * texts that fail cost their parse and nothing after it; the cache is bounded by an estimate of
 * its bytes and forgets the least recently used document first. Documents are parsed without
 * locations (about a third of the size), so errors raised while executing one carry no location.
 */
export class DocumentCache {
  /** Text → entry; a Map iterates in insertion order, and a hit is moved to the end. */
  private readonly entries = new Map<string, { text: string; document: DocumentNode; bytes: number }>();
  private used = 0;

  constructor(
    private readonly opts: {
      schema: GraphQLSchema;
      /** Validation rules (graphql-js's specified rules plus e.g. graphql-armor's). */
      rules: readonly ValidationRule[];
      /** Lexical tokens a document may have; parsing stops past it (GRAPHQL_MAX_TOKENS). */
      maxTokens?: number;
      /** Estimated bytes of the cached texts and documents; 0 caches nothing. @default 4 MiB */
      maxBytes?: number;
      /**
       * Keep the documents' locations, so that errors raised while executing one point at the
       * spot, as Apollo's do (the HTTP lane); about three times the memory per document.
       */
      locations?: boolean;
    },
  ) {}

  /** Documents cached. */
  get size(): number {
    return this.entries.size;
  }

  /** Estimated bytes of the cached texts and documents. */
  get bytes(): number {
    return this.used;
  }

  /** The document of a text: from the cache, or parsed, validated and (when valid) cached. */
  load(text: string): LoadedDocument {
    const hit = this.entries.get(text);
    if (hit) {
      this.entries.delete(text);
      this.entries.set(text, hit);
      return { document: hit.document };
    }
    const { schema, rules, maxTokens } = this.opts;
    let document: DocumentNode;
    try {
      document = parse(text, { noLocation: !this.opts.locations, maxTokens });
    } catch (err) {
      if (err instanceof GraphQLError) return { errors: [err], phase: 'parse' };
      throw err;
    }
    const errors = validate(schema, document, rules);
    if (errors.length > 0) {
      // without locations: again with them, so that the errors point at the spot (only texts that fail pay this)
      return { errors: this.opts.locations ? errors : validate(schema, parse(text, { maxTokens }), rules), phase: 'validation' };
    }
    this.remember(text, document);
    return { document };
  }

  /**
   * For graphql-ws `jsonMessageReviver`: a subscribe message's query text that is already known
   * is replaced by the cached copy, so that the many subscriptions of one document do not each
   * keep their own copy of its text (graphql-ws keeps the message for the operation's lifetime).
   */
  readonly reviver = (key: string, value: unknown): unknown => {
    if (key !== 'query' || typeof value !== 'string') return value;
    return this.entries.get(value)?.text ?? value;
  };

  private remember(text: string, document: DocumentNode): void {
    const max = this.opts.maxBytes ?? 4 * 1024 * 1024;
    const bytes = estimateBytes(text, document);
    if (bytes > max) return;
    for (const [oldest, entry] of this.entries) {
      if (this.used + bytes <= max) break;
      this.entries.delete(oldest);
      this.used -= entry.bytes;
    }
    this.entries.set(text, { text, document, bytes });
    this.used += bytes;
  }
}

/**
 * Heap bytes of a cached text and its document, on the safe side: V8 keeps a string in 1 or 2
 * bytes a character, and each AST object or array measured 45-70 bytes (64 here); a node's
 * location (not walked: its tokens are a linked list back and forth) is counted as 160 more, for
 * itself and the tokens it keeps. The constant covers the cache's own entry.
 */
function estimateBytes(text: string, document: DocumentNode): number {
  let objects = 0;
  let located = 0;
  const stack: unknown[] = [document];
  while (stack.length) {
    const value = stack.pop();
    if (value === null || typeof value !== 'object') continue;
    objects++;
    if (Array.isArray(value)) {
      for (const v of value) stack.push(v);
      continue;
    }
    for (const [key, v] of Object.entries(value)) {
      if (key === 'loc') located += v ? 1 : 0;
      else stack.push(v);
    }
  }
  return 2 * text.length + 64 * objects + 160 * located + 160;
}

type Result = ExecutionResult | Promise<ExecutionResult>;

/**
 * graphql-js `subscribe`, except that each event is executed once per distinct operation
 * (document, operation name, variables) however many subscribers receive it: the event objects
 * a pub/sub delivers to its subscribers are the same object, so results are kept in a WeakMap
 * keyed by the event and go away with it.
 *
 * Safe only because the subscription fields resolve from the event alone: whoever may receive
 * an event was decided when the subscription started (the ownership check of its `subscribe`),
 * not when each event is executed.
 */
export function createSharedSubscribe(): (args: ExecutionArgs) => Promise<AsyncGenerator<ExecutionResult, void, void> | ExecutionResult> {
  const perEvent = new WeakMap<object, Map<string, Result>>();
  const docIds = new WeakMap<DocumentNode, number>();
  let nextDocId = 0;

  return async (args) => {
    const source = await createSourceEventStream(args);
    if (!(Symbol.asyncIterator in source)) return source as ExecutionResult;
    let docId = docIds.get(args.document);
    if (docId === undefined) docIds.set(args.document, (docId = nextDocId++));
    const key = `${docId}\u0000${args.operationName ?? ''}\u0000${JSON.stringify(args.variableValues ?? null)}`;
    const run = (event: unknown): Result => {
      if (event === null || typeof event !== 'object') return execute({ ...args, rootValue: event });
      let results = perEvent.get(event);
      if (!results) perEvent.set(event, (results = new Map()));
      let result = results.get(key);
      if (!result) {
        result = execute({ ...args, rootValue: event });
        results.set(key, result);
      }
      return result;
    };
    return new SharedSubscription((source as AsyncIterable<unknown>)[Symbol.asyncIterator](), run) as unknown as AsyncGenerator<ExecutionResult, void, void>;
  };
}

/**
 * A subscription's results: the source's events mapped by `run` (executed once per distinct
 * operation). `return()` goes straight to the source (an async generator function would wait for
 * the pending `next()`, i.e. for the next event, before it could clean up). A class, so that
 * thousands of subscriptions share its methods; the WebSocket transport may take `source` and
 * `run` over to write each result itself (ws-direct.ts).
 */
export class SharedSubscription<T = unknown, U = ExecutionResult> {
  constructor(
    readonly source: AsyncIterator<T>,
    readonly run: (value: T) => U | Promise<U>,
  ) {}

  private async map(r: IteratorResult<T>): Promise<IteratorResult<U, void>> {
    if (r.done) return { value: undefined, done: true };
    try {
      return { value: await this.run(r.value), done: false };
    } catch (err) {
      await this.source.return?.().catch(() => undefined);
      throw err;
    }
  }

  async next(): Promise<IteratorResult<U, void>> {
    return this.map(await this.source.next());
  }

  async return(): Promise<IteratorResult<U, void>> {
    await this.source.return?.();
    return { value: undefined, done: true };
  }

  async throw(err: unknown): Promise<IteratorResult<U, void>> {
    if (this.source.throw) return this.map(await this.source.throw(err));
    await this.source.return?.();
    throw err;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
