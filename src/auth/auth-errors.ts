import { DomainError } from '../common/domain-error.js';
import type { Permission } from './permissions.js';

/** No credentials, or credentials that do not check out: 401 with one message per cause, never the token. */
export class UnauthenticatedError extends DomainError {
  constructor(
    message: string,
    /** Why, for the log and the metric; not sent. */
    readonly reason: string,
  ) {
    super('UNAUTHENTICATED', message, 401);
  }
}

/**
 * The caller may not do this here. Names the permission and echoes the scope that was asked for, and
 * says nothing about whether the resource exists: it is thrown before anything is looked up.
 */
export class ForbiddenError extends DomainError {
  constructor(
    readonly permission: Permission,
    scope: { registry?: string | null; repository?: string | null; item?: number } = {},
    reason?: string,
  ) {
    const where = scope.registry
      ? ` on registry "${scope.registry}"${scope.repository ? `, repository "${scope.repository}"` : ''}`
      : '';
    const item = scope.item !== undefined ? `items[${scope.item}]: ` : '';
    super('FORBIDDEN', reason ?? `${item}missing permission ${permission}${where}`, 403, {
      permission,
      ...(scope.registry ? { registry: scope.registry } : {}),
      ...(scope.repository ? { repository: scope.repository } : {}),
      ...(scope.item !== undefined ? { item: scope.item } : {}),
    });
  }
}

export class RateLimitedError extends DomainError {
  constructor(readonly retryAfterSeconds: number) {
    super('RATE_LIMITED', `too many requests; retry in ${retryAfterSeconds} s`, 429, {
      retryAfterSeconds,
    });
  }
}

/** The identity provider (JWKS, discovery document) could not be reached: not the caller's fault. */
export class IdentityProviderUnavailableError extends DomainError {
  constructor() {
    super(
      'IDENTITY_PROVIDER_UNAVAILABLE',
      'the identity provider could not be reached to check the token; retry later',
      503,
    );
  }
}
