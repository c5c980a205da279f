/*
 * The one table of what each role may do. Routes and resolvers declare a permission
 * (@RequirePermission), role bindings give a principal a role on a scope, and a request is allowed when
 * some binding's role holds the permission on a scope that covers the registry and repository addressed.
 *
 * Pure data: the config schema validates OIDC_GROUP_ROLES against it, so it imports nothing from Nest.
 */

export const PERMISSIONS = [
  'registries:read',
  'registries:write',
  'catalog:read',
  'deletions:create',
  'deletions:read',
  'deletions:read-own',
  'gc:run',
  'gc:read',
  'audit:read',
  'webhooks:manage',
  'access:manage',
  'queues:manage',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const ROLES = ['admin', 'operator', 'deleter', 'auditor', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

export const PERMISSION_DESCRIPTIONS: Record<Permission, string> = {
  'registries:read': 'list registries, read their settings and probe them',
  'registries:write': 'register, change and unregister registries',
  'catalog:read': 'list repositories, tags and manifests',
  'deletions:create': 'delete images and tags, plan, execute and cancel deletions',
  'deletions:read': 'read every deletion request in scope',
  'deletions:read-own': 'read the deletion requests the principal made itself',
  'gc:run': 'start and cancel garbage collection',
  'gc:read': 'read garbage collection runs',
  'audit:read': 'read and verify the audit trail',
  'webhooks:manage': 'manage webhook subscriptions',
  'access:manage': 'manage service accounts, API tokens and role bindings',
  'queues:manage': 'the BullMQ dashboard at /queues',
};

export const ROLE_PERMISSIONS: Record<Role, readonly Permission[]> = {
  admin: PERMISSIONS,
  operator: ['registries:read', 'catalog:read', 'deletions:create', 'deletions:read', 'gc:run', 'gc:read'],
  deleter: ['deletions:create', 'deletions:read-own'],
  auditor: ['audit:read', 'deletions:read', 'gc:read'],
  viewer: ['registries:read', 'catalog:read'],
};

export const ROLE_DESCRIPTIONS: Record<Role, string> = {
  admin: 'everything, including registries, service accounts, role bindings and webhooks',
  operator: 'delete and run garbage collection; read registries, the catalog and deletion/GC history',
  deleter: 'delete only; read its own deletion requests',
  auditor: 'read the audit trail and deletion/GC history, nothing else',
  viewer: 'read registries and the catalog',
};

export function isRole(v: unknown): v is Role {
  return typeof v === 'string' && (ROLES as readonly string[]).includes(v);
}

export function roleGrants(role: Role, permission: Permission): boolean {
  return ROLE_PERMISSIONS[role].includes(permission);
}
