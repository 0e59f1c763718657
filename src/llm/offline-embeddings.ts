/**
 * Deterministic embeddings for the offline responder (and the tests' fake OpenAI server): a
 * hashed bag of word stems and character trigrams, L2-normalised. Texts that share words (or
 * their beginnings: "бегал", "бегать") are closer than texts that do not, so semantic search and
 * recall behave sensibly with no model. Not a language model: synonyms are not close.
 */

const STOP = new Set(
  (
    'the and for with that this you your are was were have has had not but what when how about from into our out ' +
    'its his her him she they them their there then than will would can could just very also who whom which ' +
    'как что это так вот она они оно его её ему мне меня мой моя моё мои ты тебя тебе вы вас вам был была было были ' +
    'для при про под над без все всё ещё уже или если когда где там тут чем чтобы тоже только очень'
  ).split(' '),
);

/** FNV-1a, 32 bits. */
function hash(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function add(v: Float64Array, feature: string, weight: number): void {
  const h = hash(feature, 0);
  const sign = hash(feature, 0x9e3779b9) & 1 ? 1 : -1;
  v[h % v.length]! += sign * weight;
}

/** The words of a text, lower-cased, without short and stop words. */
export function words(text: string): string[] {
  return (text.toLowerCase().replace(/ё/g, 'е').match(/[\p{L}\p{N}]+/gu) ?? []).filter((w) => w.length >= 3 && !STOP.has(w));
}

export function offlineEmbedding(text: string, dimensions = 256): number[] {
  const v = new Float64Array(Math.max(1, dimensions));
  for (const w of words(text)) {
    add(v, `w:${w.slice(0, 4)}`, 1);
    if (w.length > 4) add(v, `w:${w.slice(0, 6)}`, 0.5);
    for (let i = 0; i + 3 <= w.length; i++) add(v, `t:${w.slice(i, i + 3)}`, 0.25);
  }
  let norm = 0;
  for (const x of v) norm += x * x;
  if (norm === 0) {
    // no words at all: a fixed unit vector, far from every text that has some
    v[0] = 1;
    norm = 1;
  }
  const scale = 1 / Math.sqrt(norm);
  return Array.from(v, (x) => Math.fround(x * scale));
}

/** The usage an embeddings endpoint reports: roughly a token per word piece. */
export function offlineEmbeddingTokens(text: string): number {
  return Math.max(1, Math.ceil((text.match(/[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu) ?? []).length * 1.3));
}
