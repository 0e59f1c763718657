import * as cl100k from 'gpt-tokenizer/encoding/cl100k_base';
import * as o200k from 'gpt-tokenizer/encoding/o200k_base';
import { modelToEncodingMap } from 'gpt-tokenizer/mapping';

type Encoding = typeof o200k;

/**
 * Token counts with the encoding of the configured model (`gpt-tokenizer`). The encoding is
 * found by the model name: gpt-tokenizer's own table first, then the families by prefix
 * (gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1/o3/o4 → o200k_base; gpt-4, gpt-3.5 → cl100k_base). An
 * unknown model (Ollama, vLLM, another provider) is counted with o200k_base: an estimate, whose
 * drift from the provider's numbers the tokenscount rows record (`meta.localPromptTokens`).
 *
 * A chat request costs exactly `chatBase + Σ (perMessage + tokens(content))` (the chat format
 * wraps each message in the same special tokens), so per-message counts stored once add up to
 * the count of the whole request: building a context never re-tokenizes history.
 */
export interface Tokenizer {
  /** `o200k_base` or `cl100k_base`. */
  readonly encoding: string;
  /** Tokens of one text. */
  count(text: string): number;
  /** Tokens a chat request has before its first message. */
  readonly chatBase: number;
  /** Tokens each message adds besides its content. */
  readonly perMessage: number;
  /** The last `maxTokens` tokens of `text` (a message longer than the budget keeps its end). */
  tail(text: string, maxTokens: number): string;
  /** The first `maxTokens` tokens of `text`. */
  head(text: string, maxTokens: number): string;
}

const O200K_PREFIXES = ['gpt-4o', 'chatgpt-4o', 'gpt-4.1', 'gpt-4.5', 'gpt-5', 'o1', 'o3', 'o4', 'gpt-oss'];
const CL100K_PREFIXES = ['gpt-4', 'gpt-3.5', 'text-embedding-3', 'text-embedding-ada'];

/** The encoding name for a model (see {@link Tokenizer}). */
export function encodingForModel(model: string): 'o200k_base' | 'cl100k_base' {
  const known = (modelToEncodingMap as Record<string, string>)[model];
  if (known === 'o200k_base' || known === 'cl100k_base') return known;
  const m = model.toLowerCase();
  if (O200K_PREFIXES.some((p) => m.startsWith(p))) return 'o200k_base';
  if (CL100K_PREFIXES.some((p) => m.startsWith(p))) return 'cl100k_base';
  return 'o200k_base';
}

const cache = new Map<string, Tokenizer>();

export function tokenizerFor(model: string): Tokenizer {
  const name = encodingForModel(model);
  let t = cache.get(name);
  if (!t) {
    const enc: Encoding = name === 'o200k_base' ? o200k : (cl100k as unknown as Encoding);
    // the chat format is the same for every model of an encoding; count it once
    const chatModel = name === 'o200k_base' ? 'gpt-4o' : 'gpt-4';
    const chatBase = enc.encodeChat([], chatModel as 'gpt-4o').length;
    const perMessage = enc.encodeChat([{ role: 'user', content: '' }], chatModel as 'gpt-4o').length - chatBase;
    t = {
      encoding: name,
      count: (text) => (text ? enc.countTokens(text) : 0),
      chatBase,
      perMessage,
      tail: (text, maxTokens) => {
        const ids = enc.encode(text);
        return ids.length <= maxTokens ? text : enc.decode(ids.slice(ids.length - Math.max(0, maxTokens)));
      },
      head: (text, maxTokens) => {
        const ids = enc.encode(text);
        return ids.length <= maxTokens ? text : enc.decode(ids.slice(0, Math.max(0, maxTokens)));
      },
    };
    cache.set(name, t);
  }
  return t;
}
