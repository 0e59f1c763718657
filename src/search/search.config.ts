import { bool, int, num, oneOf, str, type Env } from '../config.env';

/** Search and recall (search/): what config.ts reads for them. README's configuration table mirrors it. */
export interface SearchConfig {
  /** EMBEDDINGS: embed every COMPLETE/STOPPED message in the background (metered). @default true */
  embeddings: boolean;
  /** EMBEDDING_MODEL, through the same base URL and key as the chat model. @default "text-embedding-3-small" */
  embeddingModel: string;
  /**
   * EMBEDDING_DIMENSIONS: asked of the model (`dimensions`, text-embedding-3-*); 0 asks nothing
   * and stores the model's own length (servers that do not know the parameter). @default 256
   */
  embeddingDimensions: number;
  /** Messages per embeddings call of the background job. @default 64 */
  embeddingBatch: number;
  /** RECALL_MAX: older messages recalled into a reply's context; 0 turns recall off. @default 5 */
  recallMax: number;
  /** RECALL_MIN_SCORE: the least cosine similarity of a recalled message. @default 0.35 */
  recallMinScore: number;
  /** SEARCH_MIN_SCORE: the least cosine similarity of a SEMANTIC hit. @default 0.2 */
  searchMinScore: number;
  /** SEARCH_SEMANTIC_DEPTH: nearest messages a SEMANTIC (or HYBRID) search ranks. @default 200 */
  semanticDepth: number;
  /** SEARCH_TEXT_DEPTH: the newest matches a TEXT search ranks (a very common word matches thousands). @default 2000 */
  textDepth: number;
  /** VECTOR_STORE: `auto` uses pgvector when the server has it, else float4 arrays. @default "auto" */
  vectorStore: 'auto' | 'pgvector' | 'float4';
  /**
   * SIGN_INDEX_BYTES: memory for the float4 store's in-process sign bits of the embeddings
   * (about 170 bytes per message at 256 dimensions; least recently used visions are forgotten
   * first); 0 scans them in PostgreSQL instead. @default 67108864 (64 MiB)
   */
  signIndexBytes: number;
}

export function loadSearchConfig(env: Env): SearchConfig {
  return {
    embeddings: bool(env, 'EMBEDDINGS', true),
    embeddingModel: str(env, 'EMBEDDING_MODEL') ?? 'text-embedding-3-small',
    embeddingDimensions: int(env, 'EMBEDDING_DIMENSIONS', 256, 0, 4096),
    embeddingBatch: int(env, 'EMBEDDING_BATCH_SIZE', 64, 1, 2048),
    recallMax: int(env, 'RECALL_MAX', 5, 0, 50),
    recallMinScore: num(env, 'RECALL_MIN_SCORE', 0.35, -1, 1),
    searchMinScore: num(env, 'SEARCH_MIN_SCORE', 0.2, -1, 1),
    semanticDepth: int(env, 'SEARCH_SEMANTIC_DEPTH', 200, 10, 10_000),
    textDepth: int(env, 'SEARCH_TEXT_DEPTH', 2000, 20, 1_000_000),
    vectorStore: oneOf(env, 'VECTOR_STORE', 'auto', ['auto', 'pgvector', 'float4'] as const),
    signIndexBytes: int(env, 'SIGN_INDEX_BYTES', 64 * 1024 * 1024, 0, 64 * 1024 * 1024 * 1024),
  };
}
