/**
 * Where the API is and who the person is. The identity lives in localStorage so that a reload
 * keeps it: a development user id (sent as `x-user-id`, accepted only by a server in
 * development without JWT settings) or a bearer token.
 */

export interface Identity {
  /** Development identity: the `x-user-id` header / connection parameter. */
  userId: string;
  /** A JWT: `Authorization: Bearer <token>` (wins over userId when both are set). */
  token: string;
}

const STORAGE_KEY = 'vision-path.identity';

/** HTTP endpoint: VITE_GRAPHQL_URL, or `/graphql` on this origin (Vite's dev and preview proxy it). */
export function graphqlHttpUrl(): string {
  const configured = import.meta.env.VITE_GRAPHQL_URL?.trim();
  return new URL(configured || '/graphql', window.location.href).toString();
}

/** The same URL over WebSocket (graphql-transport-ws on the same path). */
export function graphqlWsUrl(): string {
  const url = new URL(graphqlHttpUrl());
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

export function loadIdentity(): Identity {
  try {
    const raw = window.localStorage.getItem(STORAGE_KEY);
    if (raw) {
      const parsed = JSON.parse(raw) as Partial<Identity>;
      return { userId: String(parsed.userId ?? ''), token: String(parsed.token ?? '') };
    }
  } catch {
    // private mode or a damaged value: start without an identity
  }
  return { userId: '', token: '' };
}

export function saveIdentity(identity: Identity): void {
  try {
    window.localStorage.setItem(STORAGE_KEY, JSON.stringify(identity));
  } catch {
    // not persisted; this tab still works
  }
}

export function hasIdentity(identity: Identity): boolean {
  return identity.token.trim() !== '' || identity.userId.trim() !== '';
}

/** HTTP headers of the identity. */
export function identityHeaders(identity: Identity): Record<string, string> {
  if (identity.token.trim()) return { authorization: `Bearer ${identity.token.trim()}` };
  if (identity.userId.trim()) return { 'x-user-id': identity.userId.trim() };
  return {};
}

/** graphql-ws connectionParams of the identity (the server reads the same names). */
export function identityConnectionParams(identity: Identity): Record<string, string> {
  return identityHeaders(identity);
}

/**
 * A client message id (the idempotency key of sendMessage). crypto.randomUUID exists only in
 * secure contexts (https, localhost); elsewhere the same v4 layout from getRandomValues.
 */
export function newClientMessageId(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
