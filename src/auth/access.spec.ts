import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../config/app-config.js';
import { Access, Grant } from './access.js';
import { generateApiToken, hashApiToken, isWellFormedApiToken } from './api-token.js';
import { ForbiddenError } from './auth-errors.js';
import { parseRepositoryPath, repositoryGlobProblem, repositoryOfPath } from './scope.js';

const grant = (
  role: Grant['role'],
  registry: string | null = null,
  repository: string | null = null,
): Grant => ({
  role,
  registry,
  repository,
  source: 'test',
});

describe('Access', () => {
  it('a global grant covers every registry, repository and the whole system', () => {
    const a = new Access([grant('viewer')]);
    expect(a.can('catalog:read')).toBe(true);
    expect(a.can('catalog:read', 'prod', 'team-a/api')).toBe(true);
    expect(a.can('deletions:create', 'prod', 'team-a/api')).toBe(false);
  });

  it('a registry grant covers that registry only, never the system-wide scope', () => {
    const a = new Access([grant('operator', 'prod')]);
    expect(a.can('deletions:create', 'prod', 'anything/at/all')).toBe(true);
    expect(a.can('deletions:create', 'prod')).toBe(true);
    expect(a.can('deletions:create', 'dev', 'anything')).toBe(false);
    expect(a.can('deletions:create')).toBe(false);
    expect(a.canInRegistry('deletions:create', 'prod')).toBe(true);
    expect(a.canInRegistry('deletions:create', 'dev')).toBe(false);
  });

  it('a glob grant covers the matching repositories of its registry, not the registry as a whole', () => {
    const a = new Access([grant('deleter', 'prod', 'team-a/**')]);
    expect(a.can('deletions:create', 'prod', 'team-a/api')).toBe(true);
    expect(a.can('deletions:create', 'prod', 'team-a/x/y/z')).toBe(true);
    expect(a.can('deletions:create', 'prod', 'team-a')).toBe(true);
    expect(a.can('deletions:create', 'prod', 'team-ab/api')).toBe(false);
    expect(a.can('deletions:create', 'prod', 'team-b/api')).toBe(false);
    expect(a.can('deletions:create', 'dev', 'team-a/api')).toBe(false);
    expect(a.can('deletions:create', 'prod')).toBe(false);
    expect(a.canInRegistry('deletions:create', 'prod')).toBe(true);
    const visible = a.repositoryFilter('deletions:create', 'prod');
    expect(['team-a/api', 'team-b/api', 'team-a'].filter(visible)).toEqual(['team-a/api', 'team-a']);
  });

  it('roles hold exactly their permissions', () => {
    const on = (role: Grant['role']) => new Access([grant(role)]);
    expect(on('deleter').can('catalog:read')).toBe(false);
    expect(on('deleter').can('deletions:read')).toBe(false);
    expect(on('deleter').can('deletions:read-own')).toBe(true);
    expect(on('auditor').can('audit:read')).toBe(true);
    expect(on('auditor').can('catalog:read')).toBe(false);
    expect(on('operator').can('gc:run')).toBe(true);
    expect(on('operator').can('access:manage')).toBe(false);
    expect(on('viewer').can('registries:write')).toBe(false);
    expect(on('admin').can('access:manage')).toBe(true);
  });

  it('assert names the missing permission and the scope asked for', () => {
    const a = new Access([grant('viewer', 'prod', 'team-a/**')]);
    try {
      a.assert('catalog:read', 'prod', 'team-b/api');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ForbiddenError);
      expect((e as ForbiddenError).status).toBe(403);
      expect((e as ForbiddenError).details).toEqual({
        permission: 'catalog:read',
        registry: 'prod',
        repository: 'team-b/api',
      });
    }
  });
});

describe('scopes', () => {
  it('finds the repository of catalog and delete paths', () => {
    expect(repositoryOfPath('team-a/api/tags', 'read')).toBe('team-a/api');
    expect(repositoryOfPath('team-a/api/tags/', 'read')).toBe('team-a/api');
    expect(repositoryOfPath('team-a/api/tags/v1', 'delete')).toBe('team-a/api');
    expect(repositoryOfPath('team-a/api/manifests/sha256:abc', 'read')).toBe('team-a/api');
    expect(repositoryOfPath('team-a/api/manifests/sha256:abc', 'delete')).toBe('team-a/api');
    expect(repositoryOfPath('tags/manifests/v1', 'read')).toBe('tags');
    expect(repositoryOfPath('team-a/api/blobs/x', 'read')).toBe('team-a/api/blobs/x');
    // Not a form of its method: taken whole.
    expect(repositoryOfPath('team-a/api/tags/v1', 'read')).toBe('team-a/api/tags/v1');
    expect(repositoryOfPath('team-a/api/tags', 'delete')).toBe('team-a/api/tags');
  });

  it('reads a name with tags or manifests in it as the longest the form allows', () => {
    // The tags of team-a/api/tags, of team-a/api/manifests: not a tag or a manifest of team-a/api.
    expect(parseRepositoryPath('team-a/api/tags/tags', 'read')).toEqual({
      repository: 'team-a/api/tags',
      target: 'tags',
    });
    expect(parseRepositoryPath('team-a/api/manifests/tags', 'read')).toEqual({
      repository: 'team-a/api/manifests',
      target: 'tags',
    });
    expect(parseRepositoryPath('team-a/api/tags/manifests/v1', 'read')).toEqual({
      repository: 'team-a/api/tags',
      target: 'manifests',
      reference: 'v1',
    });
    expect(parseRepositoryPath('team-a/api/tags/tags', 'delete')).toEqual({
      repository: 'team-a/api',
      target: 'tags',
      reference: 'tags',
    });
    expect(parseRepositoryPath('team-a/tags/manifests/x', 'delete')).toEqual({
      repository: 'team-a/tags',
      target: 'manifests',
      reference: 'x',
    });
    expect(parseRepositoryPath('team-a/api', 'read')).toBeNull();
  });

  it('accepts repository globs and refuses what is not one', () => {
    expect(repositoryGlobProblem('team-a/**')).toBeNull();
    expect(repositoryGlobProblem('{team-a,team-b}/*')).toBeNull();
    expect(repositoryGlobProblem('!team-a/**')).not.toBeNull();
    expect(repositoryGlobProblem('Team-A/**')).not.toBeNull();
    expect(repositoryGlobProblem('/team-a')).not.toBeNull();
    expect(repositoryGlobProblem('x'.repeat(256))).not.toBeNull();
  });
});

describe('API tokens', () => {
  it('are prefixed, checksummed, unique, and hashed', () => {
    const a = generateApiToken();
    const b = generateApiToken();
    expect(a.token).toMatch(/^rgw_[A-Za-z0-9_-]{43}[0-9a-f]{8}$/);
    expect(a.token).not.toBe(b.token);
    expect(a.hint).toBe(a.token.slice(0, 12));
    expect(a.hash).toBe(hashApiToken(a.token));
    expect(a.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(isWellFormedApiToken(a.token)).toBe(true);
    // One changed character breaks the checksum.
    const typo = a.token.slice(0, 10) + (a.token[10] === 'A' ? 'B' : 'A') + a.token.slice(11);
    expect(isWellFormedApiToken(typo)).toBe(false);
    expect(isWellFormedApiToken('rgw_short')).toBe(false);
  });
});

describe('auth configuration', () => {
  const base = {
    DATABASE_URL: 'postgres://u@127.0.0.1:5432/db',
    REDIS_URL: 'redis://127.0.0.1:6379',
    SECRETS_KEY: 'a'.repeat(64),
  };

  it('parses OIDC settings and the group mapping', () => {
    const c = loadConfig({
      ...base,
      OIDC_ISSUER: 'https://idp.example.com/realms/x',
      OIDC_AUDIENCE: 'registry-gateway, other',
      OIDC_GROUP_ROLES: JSON.stringify({
        admins: 'admin',
        'team-a': [{ role: 'deleter', registry: 'prod', repository: 'team-a/**' }, 'viewer'],
      }),
    });
    expect(c.auth.oidc).toMatchObject({
      issuer: 'https://idp.example.com/realms/x',
      audience: ['registry-gateway', 'other'],
      algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA'],
      clockToleranceSeconds: 30,
      groupsClaim: 'groups',
    });
    expect(c.auth.oidc!.groupRoles).toEqual({
      admins: [{ role: 'admin', registry: null, repository: null }],
      'team-a': [
        { role: 'deleter', registry: 'prod', repository: 'team-a/**' },
        { role: 'viewer', registry: null, repository: null },
      ],
    });
    expect(c.auth.rateLimit).toEqual({ requests: 3000, windowSeconds: 60, authFailures: 60 });
  });

  it('refuses symmetric algorithms, bad mappings, short tokens and an issuer without audience', () => {
    const problems = (env: Record<string, string>) => {
      try {
        loadConfig({ ...base, ...env });
        return '';
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
    };
    expect(problems({ OIDC_ALGORITHMS: 'RS256,HS256' })).toContain('HS256 is not an asymmetric');
    expect(problems({ OIDC_ALGORITHMS: 'none' })).toContain('none is not an asymmetric');
    expect(problems({ OIDC_GROUP_ROLES: '{"g": "root"}' })).toContain('OIDC_GROUP_ROLES');
    expect(problems({ OIDC_GROUP_ROLES: '{"g": {"role": "viewer", "repository": "a/**"}}' })).toContain(
      'a repository needs a registry',
    );
    expect(problems({ OIDC_GROUP_ROLES: 'not json' })).toContain('must be JSON');
    expect(problems({ GATEWAY_ADMIN_TOKEN: 'short' })).toContain('GATEWAY_ADMIN_TOKEN');
    expect(problems({ OIDC_ISSUER: 'https://idp.example.com' })).toContain('OIDC_AUDIENCE: is required');
  });
});
