import { createHash, timingSafeEqual } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { LRUCache } from 'lru-cache';
import { DataSource } from 'typeorm';
import { AppConfig } from '../config/app-config.js';
import { Access, Grant } from './access.js';
import { API_TOKEN_PREFIX, hashApiToken, isWellFormedApiToken } from './api-token.js';
import { UnauthenticatedError } from './auth-errors.js';
import { OidcVerifier } from './oidc-verifier.js';
import type { Role } from './permissions.js';
import { BOOTSTRAP_ADMIN_ID, Principal } from './principal.js';
import type { GroupRoleMapping } from './scope.js';

/** last_used_at is written at most this often per token (per replica, and guarded in SQL across them). */
export const LAST_USED_WRITE_INTERVAL_MS = 60_000;

const BEARER_RE = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;
const JWT_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

interface BindingRow {
  id: string;
  role: Role;
  registry: string | null;
  repository: string | null;
}

/**
 * Turns an Authorization header into a principal with its grants: the bootstrap admin token, a
 * service-account API token (`rgw_…`), or an OIDC JWT. Every failure is an UnauthenticatedError whose
 * message never contains the token.
 */
@Injectable()
export class Authenticator {
  private readonly logger = new Logger('Auth');
  private readonly adminDigest: Buffer | null;
  private readonly groupRoles: GroupRoleMapping;
  private readonly lastUsedWritten = new LRUCache<string, number>({ max: 10_000 });

  constructor(
    config: AppConfig,
    @InjectDataSource() private readonly ds: DataSource,
    private readonly oidc: OidcVerifier,
  ) {
    const admin = config.auth.adminToken;
    this.adminDigest = admin ? digest(admin) : null;
    this.groupRoles = config.auth.oidc?.groupRoles ?? {};
  }

  async authenticate(authorization: string | undefined): Promise<Principal> {
    if (!authorization)
      throw new UnauthenticatedError('a bearer token is required (Authorization: Bearer <token>)', 'missing');
    const m = BEARER_RE.exec(authorization);
    if (!m) throw new UnauthenticatedError('the Authorization header must be "Bearer <token>"', 'malformed');
    const token = m[1];
    // Compared as digests, so neither the length nor a prefix of the admin token leaks through timing.
    if (this.adminDigest && timingSafeEqual(digest(token), this.adminDigest)) return bootstrapAdmin();
    if (token.startsWith(API_TOKEN_PREFIX)) return this.serviceAccount(token);
    if (this.oidc.enabled && JWT_RE.test(token)) return this.user(token);
    throw new UnauthenticatedError('the bearer token is not valid', 'unknown-token');
  }

  private async serviceAccount(token: string): Promise<Principal> {
    if (!isWellFormedApiToken(token))
      throw new UnauthenticatedError('the bearer token is not valid', 'api-token-malformed');
    const [row] = (await this.ds.query(
      `SELECT t.id, t.service_account_id AS "accountId", a.name, t.revoked_at IS NOT NULL AS revoked,
              (t.expires_at IS NOT NULL AND t.expires_at <= now()) AS expired
         FROM service_account_tokens t JOIN service_accounts a ON a.id = t.service_account_id
        WHERE t.token_hash = $1`,
      [hashApiToken(token)],
    )) as { id: string; accountId: string; name: string; revoked: boolean; expired: boolean }[];
    if (!row) throw new UnauthenticatedError('the bearer token is not valid', 'api-token-unknown');
    if (row.revoked) throw new UnauthenticatedError('the bearer token has been revoked', 'api-token-revoked');
    if (row.expired) throw new UnauthenticatedError('the bearer token has expired', 'api-token-expired');
    const bindings = (await this.ds.query(
      'SELECT id, role, registry, repository FROM role_bindings WHERE service_account_id = $1',
      [row.accountId],
    )) as BindingRow[];
    this.markUsed(row.id);
    return {
      type: 'service',
      id: row.accountId,
      name: row.name,
      via: 'api-token',
      tokenId: row.id,
      access: new Access(bindings.map(grantOf)),
    };
  }

  private async user(token: string): Promise<Principal> {
    const identity = await this.oidc.verify(token);
    const bindings = (await this.ds.query(
      `SELECT id, role, registry, repository FROM role_bindings
        WHERE (subject_type = 'user' AND subject = $1) OR (subject_type = 'group' AND subject = ANY($2::text[]))`,
      [identity.subject, identity.groups],
    )) as BindingRow[];
    const mapped = identity.groups.flatMap((group) =>
      (this.groupRoles[group] ?? []).map((r): Grant => ({ ...r, source: `group:${group}` })),
    );
    return {
      type: 'user',
      id: identity.subject,
      name: identity.name,
      via: 'oidc',
      groups: identity.groups,
      access: new Access([...bindings.map(grantOf), ...mapped]),
    };
  }

  /** Records use without a write per request: at most once a minute per token, never awaited. */
  private markUsed(tokenId: string) {
    const now = Date.now();
    const last = this.lastUsedWritten.get(tokenId);
    if (last !== undefined && now - last < LAST_USED_WRITE_INTERVAL_MS) return;
    this.lastUsedWritten.set(tokenId, now);
    this.ds
      .query(
        `UPDATE service_account_tokens SET last_used_at = now()
          WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))`,
        [tokenId, LAST_USED_WRITE_INTERVAL_MS / 1000],
      )
      .catch((err: Error) =>
        this.logger.warn(`could not record the use of token ${tokenId}: ${err.message}`),
      );
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function grantOf(b: BindingRow): Grant {
  return { role: b.role, registry: b.registry, repository: b.repository, source: `binding:${b.id}` };
}

function bootstrapAdmin(): Principal {
  return {
    type: 'service',
    id: BOOTSTRAP_ADMIN_ID,
    name: BOOTSTRAP_ADMIN_ID,
    via: 'bootstrap-token',
    access: new Access([{ role: 'admin', registry: null, repository: null, source: 'bootstrap' }]),
  };
}
