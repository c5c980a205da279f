import { Injectable, Logger } from '@nestjs/common';
import { createRemoteJWKSet, errors, JWTPayload, jwtVerify, JWTVerifyGetKey } from 'jose';
import { AppConfig, OidcConfig } from '../config/app-config.js';
import { IdentityProviderUnavailableError, UnauthenticatedError } from './auth-errors.js';

const FETCH_TIMEOUT_MS = 5000;

/** Who the token says the caller is, after every check passed. */
export interface OidcIdentity {
  subject: string;
  name: string;
  groups: string[];
}

/** Errors that say the token is bad (401); anything else means the provider could not be asked (503). */
const TOKEN_ERRORS = new Set<string>([
  errors.JWTExpired.code,
  errors.JWTClaimValidationFailed.code,
  errors.JWTInvalid.code,
  errors.JWSInvalid.code,
  errors.JWSSignatureVerificationFailed.code,
  errors.JOSEAlgNotAllowed.code,
  errors.JOSENotSupported.code,
  errors.JWKSNoMatchingKey.code,
  errors.JWKSMultipleMatchingKeys.code,
]);

/**
 * Verifies OIDC access/ID tokens (JWTs) against the issuer's key set: signature with an allowed
 * asymmetric algorithm only (so neither `none` nor an HS256 token keyed with the public key passes),
 * `iss`, `aud`, `exp` (required), `nbf`, with OIDC_CLOCK_TOLERANCE_SECONDS of leeway. The key set is
 * fetched once, cached for 10 minutes, and refetched (at most every 30 s) when a token names an
 * unknown key, which is how key rotation reaches the gateway.
 */
@Injectable()
export class OidcVerifier {
  private readonly logger = new Logger('Auth');
  private readonly oidc: OidcConfig | null;
  private keys?: Promise<JWTVerifyGetKey>;

  constructor(config: AppConfig) {
    this.oidc = config.auth.oidc;
  }

  get enabled(): boolean {
    return this.oidc !== null;
  }

  async verify(token: string): Promise<OidcIdentity> {
    const oidc = this.oidc;
    if (!oidc) throw new UnauthenticatedError('the bearer token is not valid', 'oidc-disabled');
    const keys = await this.keySet(oidc);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: oidc.issuer,
        audience: oidc.audience,
        algorithms: oidc.algorithms,
        clockTolerance: oidc.clockToleranceSeconds,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === errors.JWTExpired.code)
        throw new UnauthenticatedError('the bearer token has expired', 'expired');
      if (code && TOKEN_ERRORS.has(code))
        throw new UnauthenticatedError('the bearer token is not valid', `jwt:${code}`);
      this.logger.error(`OIDC key set unavailable: ${(err as Error).message}`);
      throw new IdentityProviderUnavailableError();
    }
    return {
      subject: payload.sub!,
      name: stringClaim(payload, oidc.usernameClaim) ?? stringClaim(payload, 'email') ?? payload.sub!,
      groups: groupsOf(claimAt(payload, oidc.groupsClaim)),
    };
  }

  /** OIDC_JWKS_URL, or the discovery document's jwks_uri; a failed discovery is retried next time. */
  private keySet(oidc: OidcConfig): Promise<JWTVerifyGetKey> {
    this.keys ??= (async () => {
      const url = oidc.jwksUrl ?? (await this.discoverJwksUri(oidc.issuer));
      return createRemoteJWKSet(new URL(url), { timeoutDuration: FETCH_TIMEOUT_MS });
    })();
    return this.keys.catch((err: unknown) => {
      this.keys = undefined;
      this.logger.error(`OIDC discovery failed: ${(err as Error).message}`);
      throw new IdentityProviderUnavailableError();
    });
  }

  private async discoverJwksUri(issuer: string): Promise<string> {
    const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    if (!res.ok) throw new Error(`${url} answered ${res.status}`);
    const doc = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
    // OIDC Discovery 4.3: the document must name exactly the issuer it was fetched for.
    if (doc.issuer !== issuer) throw new Error(`${url} names issuer ${String(doc.issuer)}, not ${issuer}`);
    if (typeof doc.jwks_uri !== 'string') throw new Error(`${url} has no jwks_uri`);
    return doc.jwks_uri;
  }
}

function claimAt(payload: JWTPayload, path: string): unknown {
  if (path in payload) return payload[path];
  let v: unknown = payload;
  for (const part of path.split('.')) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

function stringClaim(payload: JWTPayload, path: string): string | undefined {
  const v = claimAt(payload, path);
  return typeof v === 'string' && v !== '' ? v.slice(0, 255) : undefined;
}

function groupsOf(v: unknown): string[] {
  const list = Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
  return [
    ...new Set(list.filter((g): g is string => typeof g === 'string' && g.length > 0 && g.length <= 255)),
  ];
}
