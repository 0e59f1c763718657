import {
  createSourceEventStream,
  execute,
  parse,
  validate,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLError,
  type GraphQLSchema,
  type Source,
  type ValidationRule,
} from 'graphql';

/**
 * Parsed and validated operations, shared by every WebSocket subscription that sends the same
 * text: a client fleet subscribes with a handful of distinct documents, and a parsed document
 * with its locations is several KB per subscription otherwise. Documents are parsed without
 * locations (they are only used for execution; errors of a cached document carry no location).
 */
export class DocumentCache {
  private readonly docs = new Map<string, DocumentNode>();
  /** The first copy of each cached text. */
  private readonly texts = new Map<string, string>();
  private readonly checked = new WeakMap<DocumentNode, readonly GraphQLError[]>();

  constructor(
    private readonly opts: {
      /** Validation rules (graphql-js's specified rules plus e.g. graphql-armor's). */
      rules: readonly ValidationRule[];
      /** Distinct documents kept; the oldest is forgotten first. @default 1000 */
      max?: number;
    },
  ) {}

  /** For graphql-ws `parse`: the same object for the same text (throws GraphQLError on syntax errors, not cached). */
  readonly parse = (query: string | Source): DocumentNode => {
    if (typeof query !== 'string') return parse(query, { noLocation: true });
    let doc = this.docs.get(query);
    if (doc) return doc;
    doc = parse(query, { noLocation: true });
    if (this.docs.size >= (this.opts.max ?? 1000)) {
      const oldest = this.docs.keys().next().value!;
      this.docs.delete(oldest);
      this.texts.delete(oldest);
    }
    this.docs.set(query, doc);
    this.texts.set(query, query);
    return doc;
  };

  /**
   * For graphql-ws `jsonMessageReviver`: a subscribe message's query text that is already known
   * is replaced by the cached copy, so that the many subscriptions of one document do not each
   * keep their own copy of its text (graphql-ws keeps the message for the operation's lifetime).
   */
  readonly reviver = (key: string, value: unknown): unknown => {
    if (key !== 'query' || typeof value !== 'string') return value;
    return this.texts.get(value) ?? value;
  };

  /** For graphql-ws `validate`: validated once per document and schema. */
  readonly validate = (schema: GraphQLSchema, document: DocumentNode): readonly GraphQLError[] => {
    let errors = this.checked.get(document);
    if (!errors) {
      errors = validate(schema, document, this.opts.rules);
      this.checked.set(document, errors);
    }
    return errors;
  };
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
    return mapAsyncIterator(source as AsyncIterable<unknown>, run);
  };
}

/**
 * Maps an async iterator. `return()` goes straight to the source (an async generator function
 * would wait for the pending `next()`, i.e. for the next event, before it could clean up). A
 * class, so that thousands of subscriptions share its methods.
 */
function mapAsyncIterator<T, U>(iterable: AsyncIterable<T>, fn: (value: T) => U | Promise<U>): AsyncGenerator<U, void, void> {
  return new MappedIterator(iterable[Symbol.asyncIterator](), fn) as unknown as AsyncGenerator<U, void, void>;
}

class MappedIterator<T, U> {
  constructor(
    private readonly it: AsyncIterator<T>,
    private readonly fn: (value: T) => U | Promise<U>,
  ) {}

  private async map(r: IteratorResult<T>): Promise<IteratorResult<U, void>> {
    if (r.done) return { value: undefined, done: true };
    try {
      return { value: await this.fn(r.value), done: false };
    } catch (err) {
      await this.it.return?.().catch(() => undefined);
      throw err;
    }
  }

  async next(): Promise<IteratorResult<U, void>> {
    return this.map(await this.it.next());
  }

  async return(): Promise<IteratorResult<U, void>> {
    await this.it.return?.();
    return { value: undefined, done: true };
  }

  async throw(err: unknown): Promise<IteratorResult<U, void>> {
    if (this.it.throw) return this.map(await this.it.throw(err));
    await this.it.return?.();
    throw err;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
