import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { AuthConfig } from '../config';
import { UnauthenticatedError } from './errors';

/** Verified tokens kept in memory (until their `exp`). */
const VERIFIED_CACHE_SIZE = 10_000;

/** Longest user id accepted from a token or the development header. */
const MAX_USER_ID = 200;

export interface Identity {
  userId: string;
  /**
   * When the credential stops being valid (epoch ms, from the JWT's `exp`); absent for the
   * development header. A WebSocket starts no subscription after it.
   */
  expiresAt?: number;
}

export interface Authenticator {
  /**
   * Resolves the caller from an `Authorization` value and the development `x-user-id` value.
   * Returns null when neither is present; throws UNAUTHENTICATED when a credential is invalid.
   */
  authenticate(authorization: string | undefined, devUserId: string | undefined): Promise<Identity | null>;
}

function checkUserId(raw: unknown): string {
  if (typeof raw !== 'string' && typeof raw !== 'number') throw new UnauthenticatedError('The token carries no user id');
  const id = String(raw).trim();
  if (!id || id.length > MAX_USER_ID) throw new UnauthenticatedError('The token carries no valid user id');
  return id;
}

/** JWT identity with `jose`: HS256 via a shared secret, or any asymmetric algorithm via JWKS. */
export function createAuthenticator(config: AuthConfig): Authenticator {
  let key: Uint8Array | JWTVerifyGetKey | undefined;
  let algorithms: string[] | undefined;
  if (config.jwtSecret) {
    key = new TextEncoder().encode(config.jwtSecret);
    algorithms = ['HS256'];
  } else if (config.jwksUrl) {
    key = createRemoteJWKSet(new URL(config.jwksUrl));
  }

  // verified tokens are remembered until they expire: a client sends the same token with every
  // request, and verifying it again is a measurable share of a cheap query
  const verified = new Map<string, { userId: string; exp: number }>();
  const remember = (token: string, userId: string, exp: number | undefined) => {
    if (!exp) return;
    if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!);
    verified.set(token, { userId, exp: exp * 1000 });
  };

  return {
    async authenticate(authorization, devUserId) {
      if (authorization !== undefined && authorization !== '') {
        const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
        if (!m) throw new UnauthenticatedError('The Authorization header must be "Bearer <JWT>"');
        if (!key) throw new UnauthenticatedError('JWT identity is not configured on this server');
        const token = m[1]!;
        const hit = verified.get(token);
        if (hit) {
          if (hit.exp > Date.now()) return { userId: hit.userId };
          verified.delete(token);
        }
        try {
          const { payload } = await jwtVerify(token, key as Uint8Array, {
            algorithms,
            issuer: config.issuer,
            audience: config.audience,
          });
          const userId = checkUserId(payload[config.userIdClaim]);
          remember(token, userId, payload.exp);
          return { userId };
        } catch (err) {
          if (err instanceof UnauthenticatedError) throw err;
          const code = (err as { code?: string }).code;
          const why =
            code === 'ERR_JWT_EXPIRED'
              ? 'the token has expired'
              : code === 'ERR_JWT_CLAIM_VALIDATION_FAILED'
                ? `the token's ${(err as { claim?: string }).claim ?? ''} claim is not accepted`
                : code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'
                  ? 'the token signature is invalid'
                  : 'the token is invalid';
          throw new UnauthenticatedError(`Invalid token: ${why}`);
        }
      }
      if (devUserId !== undefined && devUserId !== '') {
        if (!config.devHeaderAllowed) {
          throw new UnauthenticatedError('The x-user-id header is accepted in development only; send a Bearer JWT');
        }
        const id = devUserId.trim();
        if (!id || id.length > MAX_USER_ID) throw new UnauthenticatedError('x-user-id must be 1-200 characters');
        return { userId: id };
      }
      return null;
    },
  };
}
