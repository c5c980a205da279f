import { globToRegex } from '../common/glob-sql.js';
import type { Access } from './access.js';
import { roleGrants, type Permission } from './permissions.js';

/**
 * Where a permission reaches, summarised for SQL: lists narrow to these rows in the query itself, so a
 * page is never filled from rows the caller may not see and then thinned out.
 */
export interface AccessScope {
  /** A global grant: every row. */
  everywhere: boolean;
  /** Registries granted whole. */
  registries: string[];
  /** Registry -> one regex matching any repository glob granted there (registries granted whole excluded). */
  repositories: Map<string, string>;
}

export function accessScope(access: Access, permission: Permission): AccessScope {
  const held = access.grants.filter((g) => roleGrants(g.role, permission));
  const everywhere = held.some((g) => g.registry === null);
  const registries = [
    ...new Set(held.filter((g) => g.registry !== null && g.repository === null).map((g) => g.registry!)),
  ];
  const globs = new Map<string, string[]>();
  for (const g of held) {
    if (g.registry === null || g.repository === null || registries.includes(g.registry)) continue;
    let regex: string;
    try {
      regex = globToRegex(g.repository);
    } catch {
      // A binding glob outside the translatable subset shows nothing rather than too much.
      continue;
    }
    globs.set(g.registry, [...(globs.get(g.registry) ?? []), regex]);
  }
  const repositories = new Map(
    [...globs].map(([registry, res]) => [registry, res.length === 1 ? res[0] : `^(?:${res.join('|')})$`]),
  );
  return { everywhere, registries, repositories };
}

/** Nothing at all: a list answers empty without asking the database. */
export function scopeIsEmpty(s: AccessScope): boolean {
  return !s.everywhere && s.registries.length === 0 && s.repositories.size === 0;
}

/** Collects positional parameters while a query is assembled: `p(value)` answers `$n`. */
export class SqlParams {
  readonly values: unknown[] = [];

  p(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/**
 * The rows of `scope`, for a table whose rows name one registry and at most one repository (the audit
 * trail). A row without a repository needs its registry granted whole; a row without a registry, a global
 * grant. Null when every row is in scope.
 */
export function scopeCondition(
  scope: AccessScope,
  params: SqlParams,
  columns: { registry: string; repository: string },
): string | null {
  if (scope.everywhere) return null;
  const parts: string[] = [];
  if (scope.registries.length) parts.push(`${columns.registry} = ANY(${params.p(scope.registries)}::text[])`);
  for (const [registry, regex] of scope.repositories)
    parts.push(
      `(${columns.registry} = ${params.p(registry)} AND ${columns.repository} ~ ${params.p(regex)})`,
    );
  return parts.length ? `(${parts.join(' OR ')})` : 'FALSE';
}
