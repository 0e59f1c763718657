/**
 * File names that are safe to store, show and hand to a browser's "save as": never a path, no
 * control or bidi characters, no characters Windows refuses, bounded length, and an extension
 * that says what the bytes are.
 */

/** Extensions accepted per mime; the first is the one appended when the name has none of them. */
const EXTENSIONS: Record<string, readonly string[]> = {
  'text/markdown': ['md', 'markdown'],
  'text/plain': ['txt', 'text', 'log'],
  'text/csv': ['csv'],
  'application/json': ['json'],
};

/** Most file systems allow 255 bytes per name; the rest is room for a browser's " (1)". */
export const MAX_FILENAME_BYTES = 200;

/** Longer than this after the last dot is not an extension but part of the name. */
const MAX_EXTENSION_CHARS = 16;

// C0, DEL, C1 controls; bidi embeddings, overrides and isolates (they make "txt.exe" read as "exe.txt");
// zero-width characters and the BOM, which hide differences between names
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g;
const WINDOWS_RESERVED_CHARS = /[<>:"|?*]/g;
const WINDOWS_DEVICE_NAMES = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\.|$)/i;

/** The extension appended to a name of this mime (without the dot), or undefined for a mime without one. */
export function extensionFor(mime: string): string | undefined {
  return EXTENSIONS[mime.toLowerCase()]?.[0];
}

/**
 * Makes a safe file name from one a model, a person or a title proposed.
 *
 * - the last segment only: `../../etc/passwd` becomes `passwd` (then `passwd.txt` for text/plain);
 * - NUL, control, bidi-override and zero-width characters and `<>:"|?*` are dropped, runs of
 *   whitespace become one space; Unicode NFC;
 * - no leading dots (no hidden files, no `..`), no trailing dots or spaces (Windows drops them);
 * - Windows device names (`CON`, `NUL.txt`, …) get a leading `_`;
 * - an extension matching `mime` is appended when the name has none that matches (so
 *   `setup.exe` as text/plain is saved as `setup.exe.txt`, never as a program);
 * - at most {@link MAX_FILENAME_BYTES} bytes of UTF-8, cut on a character boundary before the
 *   extension, which is kept;
 * - nothing left: `document.<ext>` (`document` for a mime without a known extension).
 */
export function sanitizeFilename(name: string, mime: string): string {
  const wanted = EXTENSIONS[mime.toLowerCase()];
  let s = String(name).normalize('NFC').replace(INVISIBLE, '');
  s = s.split(/[/\\]/).pop() ?? '';
  s = s.replace(WINDOWS_RESERVED_CHARS, '').replace(/\s+/g, ' ');
  s = s.replace(/^[\s.]+/, '').replace(/[\s.]+$/, '');

  let { stem, ext } = splitExtension(s);
  if (wanted && !(ext && wanted.includes(ext.toLowerCase()))) {
    // the name's own "extension" is kept as part of the stem: it may carry meaning ("v1.2")
    stem = s;
    ext = wanted[0];
  }
  stem = stem.replace(/[\s.]+$/, '');
  if (!stem) stem = 'document';
  if (WINDOWS_DEVICE_NAMES.test(stem)) stem = `_${stem}`;

  const suffix = ext ? `.${ext}` : '';
  stem = truncateUtf8(stem, MAX_FILENAME_BYTES - Buffer.byteLength(suffix)).replace(/[\s.]+$/, '') || 'document';
  return stem + suffix;
}

function splitExtension(s: string): { stem: string; ext: string | undefined } {
  const dot = s.lastIndexOf('.');
  if (dot <= 0) return { stem: s, ext: undefined };
  const ext = s.slice(dot + 1);
  if (!ext || ext.length > MAX_EXTENSION_CHARS || !/^[\p{L}\p{N}_-]+$/u.test(ext)) return { stem: s, ext: undefined };
  return { stem: s.slice(0, dot), ext };
}

/** The longest prefix of whole grapheme clusters (an emoji or a letter with its accents stays whole) within `maxBytes`. */
function truncateUtf8(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s) <= maxBytes) return s;
  let out = '';
  let bytes = 0;
  for (const { segment } of new Intl.Segmenter(undefined, { granularity: 'grapheme' }).segment(s)) {
    const n = Buffer.byteLength(segment);
    if (bytes + n > maxBytes) break;
    out += segment;
    bytes += n;
  }
  return out;
}

/** Only these characters may appear in an ASCII fallback name (a conservative token set). */
const ASCII_SAFE = /[^A-Za-z0-9 ._()\-]/g;

/**
 * An ASCII rendering of a (sanitised) name for the `filename=` parameter of old clients: accents
 * dropped (`é` → `e`), anything else non-ASCII becomes `_`, the extension is kept.
 */
export function asciiFallback(name: string): string {
  const out = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(ASCII_SAFE, '_')
    .replace(/_+/g, '_');
  const dot = out.lastIndexOf('.');
  const ext = dot > 0 ? out.slice(dot) : '';
  // a name in another script becomes only underscores: a plain word reads better
  if (!/[A-Za-z0-9]/.test(dot > 0 ? out.slice(0, dot) : out)) return `document${ext}`;
  return out.replace(/^[._ ]+/, '') || 'document';
}
