import { applyDecorators, SetMetadata } from '@nestjs/common';
import { ApiBearerAuth, ApiExtension } from '@nestjs/swagger';
import { ApiErrors } from '../common/api-errors.js';
import type { Permission } from './permissions.js';

export const AUTH_DECLARATION = 'registry-gateway:auth';

/**
 * Where the guard finds the registry and repository a call addresses. "Param" is a route parameter in
 * REST and an argument in GraphQL. Without a registry, the permission is needed everywhere (a global
 * binding); without a repository, on the whole registry.
 */
export interface PermissionScope {
  /** Route parameter / GraphQL argument naming the registry. */
  registryParam?: string;
  /** Query-string field naming the registry (filters of listings). */
  registryQuery?: string;
  /** Field of the parent object naming the registry (GraphQL field resolvers). */
  registryParent?: string;
  /**
   * Route parameter / GraphQL argument naming the repository; `*` is the repository part of a wildcard
   * path, read by parseRepositoryPath (scope.ts) as the handler reads it: on GET `<name>/tags` or
   * `<name>/manifests/<reference>`, on DELETE `<name>/tags/<tag>` or `<name>/manifests/<reference>`.
   */
  repositoryParam?: string;
  /** Query-string field naming the repository. */
  repositoryQuery?: string;
  /**
   * A binding on any repository of the registry (or, without a registry, anywhere) is enough: for
   * registry metadata, and for listings that the handler narrows to what the caller may see.
   */
  anyRepository?: boolean;
  /**
   * The handler checks the exact resources itself, through `RequestContext.access` (bulk bodies, stored
   * records); the guard only requires the permission somewhere (within the registry, when known).
   */
  checkedInHandler?: boolean;
}

export type AuthDeclaration =
  | { kind: 'public'; reason: string }
  | { kind: 'authenticated' }
  | { kind: 'permission'; permissions: Permission[]; scope: PermissionScope };

const apiAuthResponses = (forbidden?: string) => [
  ApiBearerAuth(),
  ApiErrors({
    401: ['UNAUTHENTICATED'],
    ...(forbidden ? { 403: [{ code: 'FORBIDDEN', when: forbidden }] } : {}),
    429: ['RATE_LIMITED'],
    503: ['IDENTITY_PROVIDER_UNAVAILABLE'],
  }),
];

/**
 * The permission a route or resolver needs (any of several, when given a list), and where the scope
 * comes from. Every route and resolver declares this, `@Authenticated()` or `@Public()`: the global
 * guard denies anything that declares nothing.
 */
export function RequirePermission(permission: Permission | Permission[], scope: PermissionScope = {}) {
  const permissions = Array.isArray(permission) ? permission : [permission];
  const declaration: AuthDeclaration = { kind: 'permission', permissions, scope };
  return applyDecorators(
    SetMetadata(AUTH_DECLARATION, declaration),
    ApiExtension('x-permission', { permissions, scope }),
    ...apiAuthResponses(
      `no role binding permits this here: it needs ${permissions.join(' or ')}; \`details.permission\` names what is missing`,
    ),
  );
}

/** Any authenticated principal, whatever its roles (e.g. who am I). */
export function Authenticated() {
  return applyDecorators(
    SetMetadata(AUTH_DECLARATION, { kind: 'authenticated' } satisfies AuthDeclaration),
    ...apiAuthResponses(),
  );
}

/** No gateway authentication: health, docs, metrics, and endpoints with credentials of their own. */
export function Public(reason = 'public') {
  return SetMetadata(AUTH_DECLARATION, { kind: 'public', reason } satisfies AuthDeclaration);
}
