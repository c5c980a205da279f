import picomatch from 'picomatch';
import { z } from 'zod';
import { ROLES, Role } from './permissions.js';

/*
 * Scopes of role bindings, and the OIDC_GROUP_ROLES mapping. Pure (no Nest), so the config schema can
 * validate with it.
 */

/** Same rule as registry names (REGISTRY_NAME_RE): bindings name registries that may not exist yet. */
export const REGISTRY_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const REPOSITORY_GLOB_RE = /^[a-z0-9._/*?[\]{},-]{1,255}$/;

/** Repository globs: `team-a/**` covers team-a itself and everything below it. No negation. */
export function repositoryMatcher(glob: string): (repository: string) => boolean {
  return picomatch(glob, { dot: true, nonegate: true });
}

/** Why a repository glob is not acceptable, or null. */
export function repositoryGlobProblem(glob: string): string | null {
  if (!REPOSITORY_GLOB_RE.test(glob))
    return 'a repository glob has at most 255 lower-case letters, digits, "._-/" and the glob characters "*?[]{},"';
  if (glob.startsWith('/') || glob.endsWith('/')) return 'a repository glob neither starts nor ends with "/"';
  try {
    picomatch.makeRe(glob);
  } catch {
    return 'the repository glob does not compile';
  }
  return null;
}

/**
 * The repository a catalog or delete path addresses: `<name>/tags[/<tag>]` or
 * `<name>/manifests/<reference>`. Anything else is taken whole, so a glob check still applies to it.
 */
export function repositoryOfPath(path: string): string {
  const m = /^(.+?)\/(?:tags(?:\/[^/]*)?|manifests\/[^/]+)\/?$/.exec(path);
  return m ? m[1] : path;
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
