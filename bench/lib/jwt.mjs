// HS256 JSON Web Tokens with node:crypto only: the bench signs, the floor and the PostGraphile
// wrapper verify (the server under test verifies with `jose`, as in production).
import { createHmac, timingSafeEqual } from 'node:crypto';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

export function signJwt(secret, claims, ttlSeconds = 24 * 3600) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify({ iat: now, exp: now + ttlSeconds, ...claims }));
  const sig = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${sig}`;
}

/** The claims of a valid, unexpired HS256 token from an `Authorization: Bearer` value, else null. */
export function verifyBearer(secret, authorization) {
  if (typeof authorization !== 'string') return null;
  const m = /^Bearer\s+([\w-]+)\.([\w-]+)\.([\w-]+)\s*$/i.exec(authorization);
  if (!m) return null;
  let header;
  let claims;
  try {
    header = JSON.parse(Buffer.from(m[1], 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(m[2], 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (header.alg !== 'HS256') return null;
  const expected = createHmac('sha256', secret).update(`${m[1]}.${m[2]}`).digest();
  const given = Buffer.from(m[3], 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) return null;
  if (typeof claims.sub !== 'string' || !claims.sub) return null;
  return claims;
}
