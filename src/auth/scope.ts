import picomatch from 'picomatch';
import { z } from 'zod';
import { repositoryGlobProblem } from '../common/glob-sql.js';
import { ROLES, Role } from './permissions.js';

export { repositoryGlobProblem };

/*
 * Scopes of role bindings, and the OIDC_GROUP_ROLES mapping. Pure (no Nest), so the config schema can
 * validate with it.
 */

/** Same rule as registry names (REGISTRY_NAME_RE): bindings name registries that may not exist yet. */
export const REGISTRY_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Repository globs: `team-a/**` covers team-a itself and everything below it. No negation. */
export function repositoryMatcher(glob: string): (repository: string) => boolean {
  return picomatch(glob, { dot: true, nonegate: true });
}

/** How the wildcard path after `/repositories/` is read: by the catalog (GET) or by deletes (DELETE). */
export type RepositoryPathKind = 'read' | 'delete';

export interface AddressedPath {
  repository: string;
  /** `tags`: the repository's tags (read) or one tag (delete); `manifests`: one manifest. */
  target: 'tags' | 'manifests';
  /** The tag or digest; absent for the tag list. */
  reference?: string;
}

/**
 * The one reading of the wildcard path after `/repositories/`, for the guard and the handlers alike: were
 * they to split it apart differently, a caller would be authorized on one repository and served another.
 * A repository name may itself have `tags` or `manifests` components (`team-a/api/tags` is a name), so
 * the name is the longest the form allows:
 * - read: `<name>/tags` (or `<name>/tags/`), else `<name>/manifests/<reference>`;
 * - delete: `<name>/tags/<tag>` or `<name>/manifests/<reference>`.
 * Null when the path is neither.
 */
export function parseRepositoryPath(path: string, kind: RepositoryPathKind): AddressedPath | null {
  if (kind === 'read') {
    const tags = /^(.+)\/tags\/?$/.exec(path);
    if (tags) return { repository: tags[1], target: 'tags' };
    const manifest = /^(.+)\/manifests\/([^/]+)$/.exec(path);
    return manifest ? { repository: manifest[1], target: 'manifests', reference: manifest[2] } : null;
  }
  const m = /^(.+)\/(manifests|tags)\/([^/]+)$/.exec(path);
  return m ? { repository: m[1], target: m[2] as AddressedPath['target'], reference: m[3] } : null;
}

/** The repository a path addresses (parseRepositoryPath); anything else is taken whole, so a glob check still applies to it. */
export function repositoryOfPath(path: string, kind: RepositoryPathKind): string {
  return parseRepositoryPath(path, kind)?.repository ?? path;
}

export interface ScopedRole {
  role: Role;
  registry: string | null;
  repository: string | null;
}

const scopedRole = z
  .union([
    z.enum(ROLES),
    z.object({
      role: z.enum(ROLES),
      registry: z.string().regex(REGISTRY_NAME_RE, 'not a registry name').optional(),
      repository: z.string().optional(),
    }),
  ])
  .transform((v, ctx): ScopedRole => {
    if (typeof v === 'string') return { role: v, registry: null, repository: null };
    if (v.repository !== undefined) {
      const problem = v.registry ? repositoryGlobProblem(v.repository) : 'a repository needs a registry';
      if (problem) ctx.issues.push({ code: 'custom', message: problem, input: v.repository });
    }
    return { role: v.role, registry: v.registry ?? null, repository: v.repository ?? null };
  });

/** `{"<group>": "viewer" | {role, registry?, repository?} | [ ...either ]}`. */
export const groupRolesSchema = z.record(
  z.string().min(1).max(255),
  z.preprocess((v) => (Array.isArray(v) ? v : [v]), z.array(scopedRole)),
);

export type GroupRoleMapping = Record<string, ScopedRole[]>;
