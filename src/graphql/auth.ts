import { createRemoteJWKSet, customFetch, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { AuthConfig } from '../config';
import type { Logger } from '../logger';
import { AppError, AuthUnavailableError, UnauthenticatedError } from './errors';

/** Verified tokens kept in memory (until they expire). */
const VERIFIED_CACHE_SIZE = 10_000;

/** Longest user id accepted from a token or the development header. */
const MAX_USER_ID = 200;

/** At most one log line per this interval while the JWKS endpoint is unreachable. */
const OUTAGE_LOG_INTERVAL_MS = 10_000;

/**
 * After the JWKS endpoint failed, it is not asked again for this long: tokens that need it are
 * refused at once (auth_unavailable) instead of each waiting for the endpoint, and a down identity
 * provider gets one request a second per instance, not one per new token.
 */
const JWKS_RETRY_AFTER_MS = 1000;

export interface Identity {
  userId: string;
  /**
   * When the server stops accepting the credential (epoch ms): the JWT's `exp` plus the clock
   * tolerance. Absent for the development header. A WebSocket starts no subscription after it.
   */
  expiresAt?: number;
}

export interface Authenticator {
  /**
   * Resolves the caller from an `Authorization` value and the development `x-user-id` value.
   * Returns null when neither is present; throws UNAUTHENTICATED when a credential is invalid,
   * and {@link AuthUnavailableError} when the JWKS endpoint cannot be reached.
   */
  authenticate(authorization: string | undefined, devUserId: string | undefined): Promise<Identity | null>;
}

/** True once an identity's credential is no longer accepted (a WebSocket outliving its token). */
export function identityExpired(identity: Identity | null | undefined, now: number): boolean {
  return identity?.expiresAt !== undefined && now >= identity.expiresAt;
}

/** setTimeout's longest delay (about 24.8 days); a later expiry is waited for in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls `fn` once, when the identity's credential stops being accepted (nothing for one without an
 * expiry); returns the function that cancels it. A connection that lives as long as its token
 * (WebSocket, SSE stream) ends itself with it.
 */
export function atExpiry(identity: Identity, fn: () => void): () => void {
  const { expiresAt } = identity;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    const left = expiresAt! - Date.now();
    if (left <= 0) return fn();
    timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
    timer.unref();
  };
  if (expiresAt !== undefined) arm();
  return () => clearTimeout(timer);
}

function checkUserId(raw: unknown): string {
  if (typeof raw !== 'string' && typeof raw !== 'number') throw new UnauthenticatedError('The token carries no user id');
  const id = String(raw).trim();
  if (!id || id.length > MAX_USER_ID) throw new UnauthenticatedError('The token carries no valid user id');
  return id;
}

/** The JWKS endpoint could not be asked: the network, a timeout or its own failure (5xx, 429). */
class JwksUnreachable extends Error {
  override name = 'JwksUnreachable';
}

/**
 * jose's fetch, with the failures that are the endpoint's (not the token's) marked, so they are
 * told apart from a 4xx or a key set without the token's key. A timeout stays jose's own
 * ERR_JWKS_TIMEOUT. After a failure the endpoint is not asked for {@link JWKS_RETRY_AFTER_MS}.
 * Tokens whose key is in jose's cached key set never come here.
 */
function jwksFetcher(): (url: string, init: RequestInit) => Promise<Response> {
  let retryAt = 0;
  const failed = <T extends Error>(err: T): T => {
    retryAt = Date.now() + JWKS_RETRY_AFTER_MS;
    return err;
  };
  return async (url, init) => {
    if (Date.now() < retryAt) throw new JwksUnreachable('The JWKS endpoint failed moments ago; asked again shortly');
    let res: Response;
    try {
      res = await fetch(url, init);
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') throw failed(err as Error);
      throw failed(new JwksUnreachable('The JWKS endpoint cannot be reached', { cause: err }));
    }
    if (res.status >= 500 || res.status === 429) {
      await res.body?.cancel().catch(() => undefined);
      throw failed(new JwksUnreachable(`The JWKS endpoint answered ${res.status}`));
    }
    return res;
  };
}

function isJwksOutage(err: unknown): boolean {
  return err instanceof JwksUnreachable || (err as { code?: string }).code === 'ERR_JWKS_TIMEOUT';
}

function describeInvalid(err: unknown): string {
  const { code, claim, reason } = err as { code?: string; claim?: string; reason?: string };
  if (code === 'ERR_JWT_EXPIRED') return 'the token has expired';
  if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') {
    return reason === 'missing' ? `the token has no ${claim} claim` : `the token's ${claim ?? ''} claim is not accepted`;
  }
  if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') return 'the token signature is invalid';
  if (code === 'ERR_JWKS_NO_MATCHING_KEY') return 'the token was not signed by a known key';
  return 'the token is invalid';
}

/** JWT identity with `jose`: HS256 via a shared secret, or any asymmetric algorithm via JWKS. */
export function createAuthenticator(config: AuthConfig, opts: { logger?: Logger } = {}): Authenticator {
  let key: Uint8Array | JWTVerifyGetKey | undefined;
  let algorithms: string[] | undefined;
  if (config.jwtSecret) {
    key = new TextEncoder().encode(config.jwtSecret);
    algorithms = ['HS256'];
  } else if (config.jwksUrl) {
    key = createRemoteJWKSet(new URL(config.jwksUrl), { [customFetch]: jwksFetcher() });
  }
  const toleranceMs = config.clockToleranceSeconds * 1000;

  let lastOutageLog = 0;
  const outage = (err: unknown): never => {
    const now = Date.now();
    if (now - lastOutageLog >= OUTAGE_LOG_INTERVAL_MS) {
      lastOutageLog = now;
      opts.logger?.warn({ err }, 'JWKS endpoint unavailable: tokens cannot be verified (answering auth_unavailable)');
    }
    throw new AuthUnavailableError();
  };

  // verified tokens are remembered until they expire: a client sends the same token with every
  // request, and verifying it again is a measurable share of a cheap query
  const verified = new Map<string, Identity & { expiresAt: number }>();
  const remember = (token: string, identity: Identity & { expiresAt: number }) => {
    if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!);
    verified.set(token, identity);
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
          // the same instant jose would refuse it: exp + tolerance
          if (hit.expiresAt > Date.now()) return { userId: hit.userId, expiresAt: hit.expiresAt };
          verified.delete(token);
        }
        try {
          const { payload } = await jwtVerify(token, key as Uint8Array, {
            algorithms,
            issuer: config.issuer,
            audience: config.audience,
            // a token without exp would be valid forever (and cached forever)
            requiredClaims: ['exp'],
            clockTolerance: config.clockToleranceSeconds,
          });
          const identity = { userId: checkUserId(payload[config.userIdClaim]), expiresAt: payload.exp! * 1000 + toleranceMs };
          remember(token, identity);
          return { ...identity };
        } catch (err) {
          if (err instanceof AppError) throw err;
          // the key set could not be fetched: nothing is known about the token, so it is not "bad"
          if (isJwksOutage(err)) return outage(err);
          throw new UnauthenticatedError(`Invalid token: ${describeInvalid(err)}`);
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
