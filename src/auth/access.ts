import { ForbiddenError } from './auth-errors.js';
import { Permission, Role, roleGrants } from './permissions.js';
import { repositoryMatcher } from './scope.js';

/**
 * One role on one scope: everywhere (`registry` null), one registry (`repository` null), or the
 * repositories of one registry that match a glob.
 */
export interface Grant {
  role: Role;
  registry: string | null;
  repository: string | null;
  /** Where it comes from: `binding:<id>`, `group:<name>` (OIDC_GROUP_ROLES) or `bootstrap`. */
  source: string;
}

interface Compiled extends Grant {
  matches: ((repository: string) => boolean) | null;
}

/**
 * What a principal may do, from its grants. A check names the registry and repository it addresses;
 * leaving the repository out asks for the whole registry, leaving the registry out asks for everything.
 */
export class Access {
  private readonly compiled: Compiled[];

  constructor(readonly grants: readonly Grant[]) {
    this.compiled = grants.map((g) => ({
      ...g,
      matches: g.registry !== null && g.repository !== null ? repositoryMatcher(g.repository) : null,
    }));
  }

  /** Some grant holds `permission` on a scope that covers this registry and repository. */
  can(permission: Permission, registry?: string | null, repository?: string | null): boolean {
    return this.compiled.some((g) => {
      if (!roleGrants(g.role, permission)) return false;
      if (g.registry === null) return true;
      if (!registry || g.registry !== registry) return false;
      if (g.matches === null) return true;
      return !!repository && g.matches(repository);
    });
  }

  /** Some grant holds `permission` on the registry or on some of its repositories. */
  canInRegistry(permission: Permission, registry: string): boolean {
    return this.compiled.some(
      (g) => roleGrants(g.role, permission) && (g.registry === null || g.registry === registry),
    );
  }

  /** Some grant holds `permission`, on any scope. */
  canAnywhere(permission: Permission): boolean {
    return this.compiled.some((g) => roleGrants(g.role, permission));
  }

  /** Which repositories of `registry` a listing may show. */
  repositoryFilter(permission: Permission, registry: string): (repository: string) => boolean {
    if (this.can(permission, registry)) return () => true;
    const matchers = this.compiled
      .filter((g) => g.registry === registry && g.matches && roleGrants(g.role, permission))
      .map((g) => g.matches!);
    return (repository) => matchers.some((m) => m(repository));
  }

  assert(permission: Permission, registry?: string | null, repository?: string | null): void {
    if (!this.can(permission, registry, repository))
      throw new ForbiddenError(permission, { registry, repository });
  }

  /** The roles a principal holds, for `GET /me`. */
  get roles(): Role[] {
    return [...new Set(this.grants.map((g) => g.role))];
  }
}

/** The process acting on its own (workers, schedules): everything. */
export const ALLOW_ALL = new Access([{ role: 'admin', registry: null, repository: null, source: 'system' }]);

/** No grant at all: what a request without a principal gets, so a missed guard still denies. */
export const DENY_ALL = new Access([]);
