import type { ChatCompletionTool } from 'openai/resources/chat/completions';
import { v7 as uuidv7 } from 'uuid';
import type { ModelToolCall } from '../tokenscount/call-model';
import { sanitizeFilename } from './filename';
import type { SqlRunner } from '../db/sql';
import { clearUpload, fileKey, recordUpload } from './files.queries';
import type { FileStorage } from './storage/file-storage';

/** The only tool the coach is offered. */
export const DOCUMENT_TOOL_NAME = 'create_document';

/** What a document may be. */
export const DOCUMENT_MIMES = ['text/markdown', 'text/plain', 'text/csv', 'application/json'] as const;
export type DocumentMime = (typeof DOCUMENT_MIMES)[number];

/** The caption shown with the file is short: a longer one is a model that misunderstood the tool. */
const MAX_CAPTION_CHARS = 4000;
const MAX_FILENAME_CHARS = 1000;

/**
 * `create_document` as offered through the Chat Completions tools API. The caption is asked for
 * in the same call, so a document costs one metered call like a text reply.
 */
export const DOCUMENT_TOOL: ChatCompletionTool = {
  type: 'function',
  function: {
    name: DOCUMENT_TOOL_NAME,
    description:
      'Create a document file for the person (a plan, a checklist, notes, a table, data) when they ask for a document, ' +
      'a file or something to download or keep. The file is attached to your reply; `caption` is the short message shown with it.',
    parameters: {
      type: 'object',
      properties: {
        filename: { type: 'string', description: 'File name with extension, e.g. "plan.md"' },
        mime: { type: 'string', enum: [...DOCUMENT_MIMES] },
        content: { type: 'string', description: 'The whole document' },
        caption: { type: 'string', description: 'One or two sentences to the person about the document, in their language' },
      },
      required: ['filename', 'mime', 'content', 'caption'],
      additionalProperties: false,
    },
  },
};

/** A document the model asked for, checked. */
export interface DocumentRequest {
  filename: string;
  mime: DocumentMime;
  content: Buffer;
  caption: string;
}

/** A stored object whose `files` row is written with the reply (one transaction). */
export interface StoredDocument {
  id: string;
  storagePath: string;
  filename: string;
  mime: string;
  size: number;
}

/** Why the model's call cannot be carried out; the reply fails with `bad_response`. */
export class BadToolCallError extends Error {}

/**
 * Checks the model's tool calls: exactly one call of `create_document`, arguments valid JSON
 * with a known mime, a content of at most `maxBytes` (UTF-8) and, for JSON, content that parses.
 * The filename is sanitised (never a path: storage keys are made from the file id).
 */
export function parseDocumentCall(calls: ModelToolCall[], maxBytes: number): DocumentRequest {
  if (calls.length !== 1) throw new BadToolCallError(`expected one tool call, got ${calls.length}`);
  const call = calls[0]!;
  if (call.name !== DOCUMENT_TOOL_NAME) throw new BadToolCallError(`unknown tool "${call.name.slice(0, 100)}"`);
  let args: unknown;
  try {
    args = JSON.parse(call.arguments);
  } catch {
    throw new BadToolCallError('tool arguments are not valid JSON');
  }
  if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new BadToolCallError('tool arguments are not an object');
  const { filename, mime, content, caption } = args as Record<string, unknown>;
  if (typeof filename !== 'string' || !filename.trim() || filename.length > MAX_FILENAME_CHARS) throw new BadToolCallError('bad filename');
  if (typeof mime !== 'string' || !(DOCUMENT_MIMES as readonly string[]).includes(mime)) throw new BadToolCallError(`mime not allowed: ${String(mime).slice(0, 100)}`);
  if (typeof content !== 'string') throw new BadToolCallError('content is not a string');
  if (caption !== undefined && (typeof caption !== 'string' || caption.length > MAX_CAPTION_CHARS)) throw new BadToolCallError('bad caption');
  const bytes = Buffer.from(content, 'utf8');
  if (bytes.length > maxBytes) throw new BadToolCallError(`document of ${bytes.length} bytes is over MAX_FILE_BYTES (${maxBytes})`);
  if (mime === 'application/json') {
    try {
      JSON.parse(content);
    } catch {
      throw new BadToolCallError('an application/json document that is not JSON');
    }
  }
  const name = sanitizeFilename(filename, mime);
  return { filename: name, mime: mime as DocumentMime, content: bytes, caption: caption?.trim() || name };
}

/**
 * Stores the document's bytes under a new file id: the upload is recorded, then the object is
 * written; its row (which clears the record) follows with the reply.
 */
export async function storeDocument(sql: SqlRunner, storage: FileStorage, doc: DocumentRequest): Promise<StoredDocument> {
  const id = uuidv7();
  const storagePath = fileKey(id);
  await recordUpload(sql, { fileId: id, storagePath });
  const { size } = await storage.put(storagePath, doc.content, { mime: doc.mime });
  return { id, storagePath, filename: doc.filename, mime: doc.mime, size };
}

/** What became of the model's tool call. */
export type DocumentOutcome =
  | { ok: true; document: StoredDocument; caption: string }
  | { ok: false; reason: 'bad_response' | 'upstream_error'; error: Error };

/** The document tool as the reply runner uses it: what to offer, and how to carry out a call. */
export class DocumentTool {
  constructor(private readonly deps: { sql: SqlRunner; storage: FileStorage; maxBytes: number; enabled: boolean }) {}

  /** The tools offered with every reply; undefined when DOCUMENT_TOOL is off. */
  get tools(): ChatCompletionTool[] | undefined {
    return this.deps.enabled ? [DOCUMENT_TOOL] : undefined;
  }

  /** Checks the call and stores the object; nothing is stored when the arguments are bad. */
  async make(calls: ModelToolCall[]): Promise<DocumentOutcome> {
    let doc: DocumentRequest;
    try {
      doc = parseDocumentCall(calls, this.deps.maxBytes);
    } catch (err) {
      return { ok: false, reason: 'bad_response', error: err as Error };
    }
    try {
      return { ok: true, document: await storeDocument(this.deps.sql, this.deps.storage, doc), caption: doc.caption };
    } catch (err) {
      return { ok: false, reason: 'upstream_error', error: err as Error };
    }
  }

  /** Removes a document that could not be attached (when this fails, the orphan sweep removes it later). */
  async remove(doc: StoredDocument): Promise<void> {
    await this.deps.storage.delete(doc.storagePath);
    await clearUpload(this.deps.sql, doc.id);
  }
}
