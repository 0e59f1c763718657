import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GraphQLError, parse } from 'graphql';
import { ConfigError } from '../config.env';

/**
 * The documents of a safelist (PERSISTED_DOCUMENTS), read once at start. Clients name a document
 * by its id (the manifest's key, usually the SHA-256 of the body) or send its exact text.
 */
export interface PersistedManifest {
  /** Which file format it was read from. */
  format: 'codegen' | 'apollo';
  /** Id (as clients send it: `extensions.persistedQuery.sha256Hash` or `documentId`) → body. */
  byId: ReadonlyMap<string, string>;
  /** SHA-256 (hex) of each body → body: a full text is accepted when it is exactly one of them. */
  byTextHash: ReadonlyMap<string, string>;
}

/** SHA-256 of a document text in hex, as Apollo Server and Apollo Client's APQ link compute it. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

const APOLLO_FORMAT = 'apollo-persisted-query-manifest';

/**
 * Reads a manifest written by GraphQL Codegen's client preset (`persisted-documents.json`:
 * `{ "<hash>": "<document>" }`) or by Apollo's `generate-persisted-query-manifest`
 * (`{ "format": "apollo-persisted-query-manifest", "version": 1, "operations": [{ id, name, type, body }] }`).
 * A missing, unreadable or malformed file, an empty list or a body that does not parse is a
 * {@link ConfigError} naming the file and what is wrong.
 */
export function readPersistedManifest(path: string): PersistedManifest {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`PERSISTED_DOCUMENTS: cannot read "${path}" (${code === 'ENOENT' ? 'no such file' : code ?? (err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`PERSISTED_DOCUMENTS: "${path}" is not valid JSON (${(err as Error).message})`);
  }
  try {
    return parsePersistedManifest(json);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`PERSISTED_DOCUMENTS: "${path}" ${err.message}`);
    throw err;
  }
}

/** {@link readPersistedManifest} for an already parsed JSON value; errors name no file. */
export function parsePersistedManifest(json: unknown): PersistedManifest {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ConfigError(`is neither format: expected a JSON object (${FORMATS})`);
  }
  const obj = json as Record<string, unknown>;
  const entries = 'format' in obj || 'operations' in obj ? apolloEntries(obj) : codegenEntries(obj);
  if (entries.length === 0) throw new ConfigError('lists no documents: every operation would be refused');
  const byId = new Map<string, string>();
  const byTextHash = new Map<string, string>();
  for (const [id, body] of entries) {
    const known = byId.get(id);
    if (known !== undefined && known !== body) throw new ConfigError(`has two different documents with the id "${id}"`);
    try {
      parse(body, { noLocation: true });
    } catch (err) {
      const why = err instanceof GraphQLError ? err.message : String(err);
      throw new ConfigError(`has a document that does not parse (id "${id}"): ${why}`);
    }
    byId.set(id, body);
    byTextHash.set(sha256Hex(body), body);
  }
  return { format: 'format' in obj ? 'apollo' : 'codegen', byId, byTextHash };
}

const FORMATS = `GraphQL Codegen's { "<hash>": "<document>" } or { "format": "${APOLLO_FORMAT}", "version": 1, "operations": [...] }`;

function codegenEntries(obj: Record<string, unknown>): [string, string][] {
  return Object.entries(obj).map(([id, body]) => {
    if (typeof body !== 'string' || body.trim() === '' || id === '') {
      throw new ConfigError(`is neither format: the value of "${id}" is not a document text (${FORMATS})`);
    }
    return [id, body];
  });
}

function apolloEntries(obj: Record<string, unknown>): [string, string][] {
  if (obj.format !== APOLLO_FORMAT) throw new ConfigError(`has "format": ${JSON.stringify(obj.format)}, expected "${APOLLO_FORMAT}"`);
  if (obj.version !== 1) throw new ConfigError(`has "version": ${JSON.stringify(obj.version)}; only version 1 is known`);
  // Apollo writes an array; some generators key the operations by id instead
  const keyed = obj.operations !== null && typeof obj.operations === 'object' && !Array.isArray(obj.operations);
  const ops = keyed ? Object.entries(obj.operations as object).map(([id, op]) => ({ id, ...(op as object) })) : obj.operations;
  if (!Array.isArray(ops)) throw new ConfigError('has no "operations" array');
  return ops.map((op: unknown, i) => {
    const o = (op ?? {}) as Record<string, unknown>;
    const bad = (field: string) => new ConfigError(`operations[${i}] has no string "${field}"`);
    if (typeof o.id !== 'string' || o.id === '') throw bad('id');
    if (typeof o.body !== 'string' || o.body.trim() === '') throw bad('body');
    if (o.name !== undefined && typeof o.name !== 'string') throw bad('name');
    if (o.type !== undefined && !['query', 'mutation', 'subscription'].includes(o.type as string)) {
      throw new ConfigError(`operations[${i}] has "type": ${JSON.stringify(o.type)} (query, mutation or subscription)`);
    }
    return [o.id, o.body];
  });
}
