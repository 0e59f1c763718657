import type { OpenAI } from 'openai';
import type { PriceTable } from '../tokenscount/prices';
import type { TokenBudgets } from '../tokenscount/budgets';
import type { Config } from '../config';
import type { SqlRunner } from '../db/sql';
import type { JobQueue } from '../jobs/queue';
import type { Logger } from '../logger';
import { EmbeddingService } from './embedder';
import { Recall } from './recall';
import { SearchService } from './search.service';
import { prepareVectorStore } from './pgvector-store';
import type { VectorStore } from './vector-store';

export interface SearchModule {
  store: VectorStore;
  embeddings: EmbeddingService;
  recall: Recall;
  service: SearchService;
}

/** Embeddings calls wait at most this long (a search falls back to TEXT sooner than a reply would fail). */
const EMBEDDING_TIMEOUT_MS = 15_000;

/**
 * The search module: vector store (pgvector or float4, checked at start), embeddings (jobs),
 * recall and the search service, wired for one process. The embeddings task is registered on `jobs` (before it starts).
 */
export async function createSearch(deps: {
  sql: SqlRunner;
  config: Pick<Config, 'search' | 'llm' | 'maxPageSize'>;
  llm: { client: OpenAI; provider: string; /** Prices of the calls' tokenscount rows. */ prices?: PriceTable; /** The clients' token budgets. */ budgets?: TokenBudgets };
  jobs: JobQueue;
  logger: Logger;
}): Promise<SearchModule> {
  const { config, logger, sql } = deps;
  const store: VectorStore = await prepareVectorStore(sql, config.search, logger);
  const embeddings = new EmbeddingService({
    sql,
    config: config.search,
    llm: deps.llm,
    timeoutMs: Math.min(config.llm.timeoutMs, EMBEDDING_TIMEOUT_MS),
    store,
    logger,
  });
  embeddings.useJobs(deps.jobs);
  const recall = new Recall({ config: config.search, embeddings, store, logger });
  const service = new SearchService({ sql, config: config.search, maxPageSize: config.maxPageSize, embeddings, store, logger });
  return { store, embeddings, recall, service };
}
