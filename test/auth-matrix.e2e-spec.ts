import { randomUUID } from 'node:crypto';
import { Controller, Get, INestApplication, Module, RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants.js';
import { ModulesContainer } from '@nestjs/core';
import {
  GraphQLSchemaHost,
  RESOLVER_NAME_METADATA,
  RESOLVER_PROPERTY_METADATA,
  RESOLVER_TYPE_METADATA,
} from '@nestjs/graphql';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { createRequire } from 'node:module';
import type {
  GraphQLField,
  GraphQLInputType,
  GraphQLObjectType,
  GraphQLOutputType,
  GraphQLSchema,
} from 'graphql';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppModule } from '../src/app.module.js';
import { AUTH_DECLARATION, AuthDeclaration } from '../src/auth/auth.decorators.js';
import { ROLE_PERMISSIONS, ROLES, type Permission, type Role } from '../src/auth/permissions.js';
import { AllExceptionsFilter } from '../src/common/all-exceptions.filter.js';
import {
  adminRequest,
  bearer,
  testConfig,
  TestEnvironment,
  TestGateway,
  startApi,
} from './support/gateway.js';
import { ImagePusher } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';

// The copy of graphql that built the schema (Nest loads the CommonJS build; a plain import here would
// get the ESM one, and graphql refuses types from another copy).
const { getNamedType, isEnumType, isInputObjectType, isListType, isNonNullType, isObjectType, isScalarType } =
  createRequire(import.meta.url)('graphql') as typeof import('graphql');

/*
 * Every REST route and every GraphQL operation, found through Nest's own metadata (never a hand list),
 * called by every role on every kind of scope. The target of every call is registry "alpha",
 * repository "team-a/api". An allowed call must get past the guard (any status but 401/403; it may
 * still fail for domain reasons), a denied one must get exactly 403 FORBIDDEN.
 */

// The README's role table, written out again: the code's table must agree with it.
const ROLE_TABLE: Record<Role, Permission[]> = {
  admin: [
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
  ],
  operator: ['registries:read', 'catalog:read', 'deletions:create', 'deletions:read', 'gc:run', 'gc:read'],
  deleter: ['deletions:create', 'deletions:read-own'],
  auditor: ['audit:read', 'deletions:read', 'gc:read'],
  viewer: ['registries:read', 'catalog:read'],
};

type ScopeName = 'global' | 'registry' | 'other-registry' | 'matching-glob' | 'other-glob';
const SCOPES: Record<ScopeName, { registry?: string; repository?: string }> = {
  global: {},
  registry: { registry: 'alpha' },
  'other-registry': { registry: 'beta' },
  'matching-glob': { registry: 'alpha', repository: 'team-a/**' },
  'other-glob': { registry: 'alpha', repository: 'team-b/**' },
};

/**
 * Which scopes cover a call on alpha / team-a/api: everywhere only (`global`), the whole registry
 * (`registry`), the repository (`repository`), any part of the registry (`in-registry`), anything
 * (`anywhere`).
 */
type Coverage = 'global' | 'registry' | 'repository' | 'in-registry' | 'anywhere' | 'never';
const COVERS: Record<Coverage, ScopeName[]> = {
  // deletions:read-own on a request someone else made.
  never: [],
  global: ['global'],
  registry: ['global', 'registry'],
  repository: ['global', 'registry', 'matching-glob'],
  'in-registry': ['global', 'registry', 'matching-glob', 'other-glob'],
  anywhere: ['global', 'registry', 'other-registry', 'matching-glob', 'other-glob'],
};

type Policy = 'public' | 'authenticated' | [Permission, Coverage][];

/**
 * The reviewed policy of the operations that exist today. A change to one of their declarations fails
 * here; an operation not listed is checked against its own declaration.
 */
const POLICY: Record<string, Policy> = {
  'GET /health/live': 'public',
  'GET /health/ready': 'public',
  'GET /metrics': 'public',
  'POST /api/v1/registries/:name/events': 'public',
  'GET /api/v1/me': 'authenticated',
  'GET /api/v1/roles': 'authenticated',
  'GET /api/v1/registries': [['registries:read', 'anywhere']],
  'POST /api/v1/registries': [['registries:write', 'global']],
  'GET /api/v1/registries/:name': [['registries:read', 'in-registry']],
  'PATCH /api/v1/registries/:name': [['registries:write', 'registry']],
  'DELETE /api/v1/registries/:name': [['registries:write', 'registry']],
  'GET /api/v1/registries/:name/health': [['registries:read', 'in-registry']],
  'GET /api/v1/registries/:registry/repositories': [['catalog:read', 'in-registry']],
  'GET /api/v1/registries/:registry/repositories/*': [['catalog:read', 'repository']],
  'DELETE /api/v1/registries/:registry/repositories/*': [['deletions:create', 'repository']],
  'POST /api/v1/deletions': [['deletions:create', 'repository']],
  'GET /api/v1/deletions': [
    ['deletions:read', 'repository'],
    ['deletions:read-own', 'in-registry'],
  ],
  'GET /api/v1/deletions/:id': [
    ['deletions:read', 'repository'],
    ['deletions:read-own', 'never'],
  ],
  'POST /api/v1/deletions/:id/execute': [['deletions:create', 'repository']],
  'POST /api/v1/deletions/:id/cancel': [['deletions:create', 'repository']],
  'GET /api/v1/audit-events': [['audit:read', 'repository']],
  'GET /api/v1/audit/verify': [['audit:read', 'global']],
  'POST /api/v1/service-accounts': [['access:manage', 'global']],
  'GET /api/v1/service-accounts': [['access:manage', 'global']],
  'GET /api/v1/service-accounts/:id': [['access:manage', 'global']],
  'DELETE /api/v1/service-accounts/:id': [['access:manage', 'global']],
  'POST /api/v1/service-accounts/:id/tokens': [['access:manage', 'global']],
  'DELETE /api/v1/service-accounts/:id/tokens/:tokenId': [['access:manage', 'global']],
  'POST /api/v1/role-bindings': [['access:manage', 'global']],
  'GET /api/v1/role-bindings': [['access:manage', 'global']],
  'GET /api/v1/role-bindings/:id': [['access:manage', 'global']],
  'PATCH /api/v1/role-bindings/:id': [['access:manage', 'global']],
  'DELETE /api/v1/role-bindings/:id': [['access:manage', 'global']],
  'GraphQL Query.registries': [['registries:read', 'anywhere']],
  'GraphQL Query.registry': [['registries:read', 'in-registry']],
  'GraphQL Mutation.createRegistry': [['registries:write', 'global']],
  'GraphQL Mutation.updateRegistry': [['registries:write', 'registry']],
  'GraphQL Mutation.deleteRegistry': [['registries:write', 'registry']],
  'GraphQL Mutation.probeRegistry': [['registries:read', 'in-registry']],
  'GraphQL Query.repositories': [['catalog:read', 'in-registry']],
  'GraphQL Query.tags': [['catalog:read', 'repository']],
  'GraphQL Query.manifest': [['catalog:read', 'repository']],
  'GraphQL Registry.repositories': [['catalog:read', 'in-registry']],
  // Lists narrowed in the query to what the caller may see: any binding with the permission may ask.
  'GraphQL Query.auditEvents': [['audit:read', 'anywhere']],
  'GraphQL Query.deletions': [
    ['deletions:read', 'anywhere'],
    ['deletions:read-own', 'anywhere'],
  ],
  // Whole-registry totals: the matrix asks for alpha's.
  'GraphQL Query.reclaimedSpace': [['gc:read', 'registry']],
  'GraphQL Mutation.deleteImage': [['deletions:create', 'repository']],
  'GraphQL Mutation.deleteTag': [['deletions:create', 'repository']],
};

interface Operation {
  key: string;
  declaration: AuthDeclaration | undefined;
  handler: string;
}

interface RestRoute extends Operation {
  method: string;
  path: string;
}

interface GraphqlOperation extends Operation {
  parentType: string;
  field: string;
}

const joinPath = (...parts: string[]) =>
  '/' +
  parts
    .map((p) => p.replace(/^\/+|\/+$/g, ''))
    .filter(Boolean)
    .join('/');

/** Methods only: getters are not touched (some providers' getters need a running container). */
function methodsOf(proto: object): string[] {
  const names = new Set<string>();
  for (let p = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p))
    for (const n of Object.getOwnPropertyNames(p)) {
      const d = Object.getOwnPropertyDescriptor(p, n);
      if (n !== 'constructor' && typeof d?.value === 'function') names.add(n);
    }
  return [...names];
}

function declarationOf(method: object, cls: object): AuthDeclaration | undefined {
  return (Reflect.getMetadata(AUTH_DECLARATION, method) ?? Reflect.getMetadata(AUTH_DECLARATION, cls)) as
    AuthDeclaration | undefined;
}

/** Every route of every controller the application loaded, from the metadata Nest routes by. */
function restRoutes(app: INestApplication): RestRoute[] {
  const routes: RestRoute[] = [];
  const seen = new Set<unknown>();
  for (const module of app.get(ModulesContainer).values()) {
    for (const wrapper of module.controllers.values()) {
      const cls = wrapper.metatype as (new (...a: never[]) => object) | null;
      if (!cls || seen.has(cls)) continue;
      seen.add(cls);
      const base = ([] as string[]).concat(Reflect.getMetadata(PATH_METADATA, cls) ?? '');
      for (const name of methodsOf(cls.prototype)) {
        const fn = (cls.prototype as Record<string, unknown>)[name];
        if (typeof fn !== 'function' || Reflect.getMetadata(METHOD_METADATA, fn) === undefined) continue;
        const method = RequestMethod[Reflect.getMetadata(METHOD_METADATA, fn) as number];
        const paths = ([] as string[]).concat(Reflect.getMetadata(PATH_METADATA, fn) ?? '');
        for (const b of base)
          for (const p of paths) {
            const path = joinPath(b, p);
            routes.push({
              key: `${method} ${path}`,
              method,
              path,
              declaration: declarationOf(fn, cls),
              handler: `${cls.name}.${name}`,
            });
          }
      }
    }
  }
  return routes;
}

/** Every resolver method (root fields and field resolvers) of every provider the application loaded. */
function graphqlOperations(app: INestApplication): GraphqlOperation[] {
  const ops: GraphqlOperation[] = [];
  const seen = new Set<unknown>();
  for (const module of app.get(ModulesContainer).values()) {
    for (const wrapper of module.providers.values()) {
      const cls = wrapper.metatype as (new (...a: never[]) => object) | null;
      if (!cls || typeof cls !== 'function' || !cls.prototype || seen.has(cls)) continue;
      seen.add(cls);
      const parentOfFields = Reflect.getMetadata(RESOLVER_TYPE_METADATA, cls) as string | undefined;
      for (const name of methodsOf(cls.prototype)) {
        const fn = (cls.prototype as Record<string, unknown>)[name];
        if (typeof fn !== 'function') continue;
        const type = Reflect.getMetadata(RESOLVER_TYPE_METADATA, fn) as string | undefined;
        const isField = Reflect.getMetadata(RESOLVER_PROPERTY_METADATA, fn) === true;
        if (!isField && !['Query', 'Mutation', 'Subscription'].includes(type ?? '')) continue;
        const parentType = isField ? parentOfFields! : type!;
        const field = (Reflect.getMetadata(RESOLVER_NAME_METADATA, fn) as string | undefined) ?? name;
        ops.push({
          key: `GraphQL ${parentType}.${field}`,
          parentType,
          field,
          declaration: declarationOf(fn, cls),
          handler: `${cls.name}.${name}`,
        });
      }
    }
  }
  return ops;
}

/** The policy of an operation: the reviewed one, or what its declaration implies. */
function policyOf(op: Operation): Policy | 'undeclared' | 'handler-decides' {
  if (POLICY[op.key]) return POLICY[op.key];
  const d = op.declaration;
  if (!d) return 'undeclared';
  if (d.kind !== 'permission') return d.kind;
  const s = d.scope;
  const hasRegistry = !!(s.registryParam || s.registryQuery || s.registryParent);
  const hasRepository = !!(s.repositoryParam || s.repositoryQuery);
  if (s.checkedInHandler) return 'handler-decides';
  const coverage: Coverage = !hasRegistry
    ? s.anyRepository
      ? 'anywhere'
      : 'global'
    : s.anyRepository
      ? 'in-registry'
      : hasRepository
        ? 'repository'
        : 'registry';
  return d.permissions.map((p) => [p, coverage]);
}

/** The declaration must say what the reviewed policy says. */
function declarationMatches(op: Operation, policy: Policy): boolean {
  const d = op.declaration;
  if (!d) return false;
  if (policy === 'public' || policy === 'authenticated') return d.kind === policy;
  return d.kind === 'permission' && JSON.stringify(d.permissions) === JSON.stringify(policy.map(([p]) => p));
}

interface Principal {
  label: string;
  role: Role;
  scope: ScopeName;
  token: string;
}

function allowed(policy: Policy, p: Principal): boolean {
  if (policy === 'public' || policy === 'authenticated') return true;
  return policy.some(
    ([perm, coverage]) => ROLE_TABLE[p.role].includes(perm) && COVERS[coverage].includes(p.scope),
  );
}

async function inBatches<T>(items: T[], size: number, fn: (item: T) => Promise<void>) {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

describe('authorization matrix: every route and GraphQL operation, every role and scope', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let registry: RegistryProcess;
  const principals: Principal[] = [];
  const fixtures: Record<string, string> = {};
  let rest: RestRoute[];
  let graphql: GraphqlOperation[];
  let schema: GraphQLSchema;

  beforeAll(async () => {
    env = await TestEnvironment.create('auth_matrix');
    registry = await RegistryProcess.start();
    const pusher = new ImagePusher(registry.url);
    for (const repo of ['team-a/api', 'team-b/api']) await pusher.pushImage(repo, ['v1'], { seed: repo });
    await pusher.close();
    gw = await startApi(env, { RATE_LIMIT_AUTH_FAILURES: '0' });
    const admin = () => adminRequest(gw.server);
    for (const name of ['alpha', 'beta'])
      await admin().post('/api/v1/registries').send({ name, url: registry.url }).expect(201);
    for (const role of ROLES)
      for (const scope of Object.keys(SCOPES) as ScopeName[]) {
        const name = `${role}-${scope}`;
        const sa = (await admin().post('/api/v1/service-accounts').send({ name }).expect(201)).body;
        await admin()
          .post('/api/v1/role-bindings')
          .send({ subject: { type: 'service_account', id: sa.id }, role, ...SCOPES[scope] })
          .expect(201);
        const { token } = (
          await admin().post(`/api/v1/service-accounts/${sa.id}/tokens`).send({}).expect(201)
        ).body;
        principals.push({ label: name, role, scope, token });
      }
    // Stored deletion requests on alpha / team-a/api, made by the admin (so nobody else's "own").
    const plan = async () =>
      (
        await admin()
          .post('/api/v1/deletions')
          .send({ registry: 'alpha', dryRun: true, items: [{ repository: 'team-a/api', reference: 'v1' }] })
          .expect(201)
      ).body.id as string;
    fixtures.read = await plan();
    fixtures.execute = await plan();
    fixtures.cancel = await plan();
    rest = restRoutes(gw.app);
    graphql = graphqlOperations(gw.app);
    schema = gw.app.get(GraphQLSchemaHost).schema;
  }, 180_000);

  afterAll(async () => {
    await gw?.close();
    await registry?.cleanup();
    await env?.destroy();
  });

  /** Allowed admins unregister alpha on the way; put it back so later calls reach real handlers. */
  async function ensureAlpha() {
    const res = await adminRequest(gw.server).get('/api/v1/registries/alpha');
    if (res.status === 404)
      await adminRequest(gw.server)
        .post('/api/v1/registries')
        .send({ name: 'alpha', url: registry.url })
        .expect(201);
  }

  it('uses the documented role table', () => {
    expect(Object.fromEntries(ROLES.map((r) => [r, [...ROLE_PERMISSIONS[r]]]))).toEqual(ROLE_TABLE);
  });

  it('finds every operation, and each declares a permission, @Authenticated or @Public', () => {
    const keys = [...rest, ...graphql].map((o) => o.key);
    // Discovery works: everything reviewed is found.
    for (const key of Object.keys(POLICY)) expect(keys, `${key} was not discovered`).toContain(key);
    const undeclared = [...rest, ...graphql]
      .filter((o) => !o.declaration)
      .map((o) => `${o.key} (${o.handler})`);
    expect(undeclared, 'operations without @RequirePermission, @Authenticated or @Public').toEqual([]);
    const drifted = [...rest, ...graphql]
      .filter((o) => POLICY[o.key] && !declarationMatches(o, POLICY[o.key]))
      .map((o) => `${o.key}: declares ${JSON.stringify(o.declaration)}`);
    expect(drifted, 'declarations that differ from the reviewed policy').toEqual([]);
    expect(rest.length).toBeGreaterThanOrEqual(30);
    expect(graphql.length).toBeGreaterThanOrEqual(10);
  });

  /** Concrete parameters, query and body for a route, addressing alpha / team-a/api. */
  function requestFor(route: RestRoute): { url: string; body?: unknown } {
    const idFor: Record<string, string> = {
      'GET /api/v1/deletions/:id': fixtures.read,
      'POST /api/v1/deletions/:id/execute': fixtures.execute,
      'POST /api/v1/deletions/:id/cancel': fixtures.cancel,
    };
    let url = route.path
      .replace(/:(registry|name)\b/g, 'alpha')
      .replace(/:id\b/, idFor[route.key] ?? randomUUID())
      .replace(/:[A-Za-z]+/g, () => randomUUID());
    if (url.endsWith('/*'))
      url = url.slice(0, -1) + (route.method === 'DELETE' ? 'team-a/api/manifests/v1' : 'team-a/api/tags');
    const scope = route.declaration?.kind === 'permission' ? route.declaration.scope : {};
    const query = new URLSearchParams();
    if (scope.registryQuery) query.set(scope.registryQuery, 'alpha');
    if (scope.repositoryQuery) query.set(scope.repositoryQuery, 'team-a/api');
    if (route.method === 'DELETE' && route.path.endsWith('*')) query.set('dryRun', 'true');
    if ([...query.keys()].length) url += `?${query}`;
    const bodies: Record<string, unknown> = {
      'POST /api/v1/registries': { name: 'matrix-new', url: registry.url },
      'PATCH /api/v1/registries/:name': { description: 'changed by the matrix' },
      'POST /api/v1/deletions': {
        registry: 'alpha',
        dryRun: true,
        items: [{ repository: 'team-a/api', reference: 'v1' }],
      },
      'POST /api/v1/service-accounts': { name: 'matrix-made' },
      'POST /api/v1/role-bindings': { subject: { type: 'user', id: 'matrix-user' }, role: 'viewer' },
      'PATCH /api/v1/role-bindings/:id': { role: 'viewer' },
      'POST /api/v1/registries/:name/events': { events: [] },
    };
    return {
      url,
      body: bodies[route.key] ?? (['POST', 'PATCH', 'PUT'].includes(route.method) ? {} : undefined),
    };
  }

  function call(route: RestRoute, token: string | null) {
    const { url, body } = requestFor(route);
    let req = request(gw.server)[route.method.toLowerCase() as 'get'](url);
    if (token) req = req.set(bearer(token));
    return body === undefined ? req : req.send(body as object);
  }

  it('REST: allows exactly the roles and scopes the policy names, refuses everyone else with 403', async () => {
    const problems: string[] = [];
    let checked = 0;
    for (const route of rest) {
      const policy = policyOf(route);
      if (policy === 'undeclared') continue; // reported by the test above
      if (policy === 'public') {
        const res = await call(route, null);
        if (res.status === 403 || (res.status === 401 && !route.path.endsWith('/events')))
          problems.push(`${route.key}: public, but anonymous got ${res.status}`);
        continue;
      }
      const anonymous = await call(route, null);
      if (anonymous.status !== 401 || anonymous.body.error?.code !== 'UNAUTHENTICATED')
        problems.push(`${route.key}: anonymous got ${anonymous.status}, expected 401 UNAUTHENTICATED`);
      await inBatches(principals, 5, async (p) => {
        const res = await call(route, p.token);
        checked++;
        const expected =
          policy === 'handler-decides'
            ? // Unknown scope rules: only the certain cells are checked.
              p.role === 'admin' && p.scope === 'global'
              ? true
              : route.declaration?.kind === 'permission' &&
                  !route.declaration.permissions.some((perm) => ROLE_TABLE[p.role].includes(perm))
                ? false
                : null
            : allowed(policy, p);
        if (expected === true && (res.status === 401 || res.status === 403))
          problems.push(
            `${route.key} as ${p.label}: expected allowed, got ${res.status} ${res.text.slice(0, 160)}`,
          );
        if (expected === false && (res.status !== 403 || res.body.error?.code !== 'FORBIDDEN'))
          problems.push(
            `${route.key} as ${p.label}: expected 403 FORBIDDEN, got ${res.status} ${res.text.slice(0, 160)}`,
          );
        const declared = route.declaration?.kind === 'permission' ? route.declaration.permissions : [];
        if (expected === false && !declared.includes(res.body.error?.details?.permission))
          problems.push(`${route.key} as ${p.label}: the 403 names ${res.body.error?.details?.permission}`);
      });
      await ensureAlpha();
    }
    expect(problems).toEqual([]);
    expect(checked).toBeGreaterThan(25 * 25);
  }, 300_000);

  /** A GraphQL document reaching `op`: a root field directly, a field resolver through a root query. */
  function documentFor(op: GraphqlOperation): {
    query: string;
    variables: Record<string, unknown>;
    parent?: string;
  } {
    const variables: Record<string, unknown> = {};
    const defs: string[] = [];
    const args = (field: GraphQLField<unknown, unknown>, prefix: string) => {
      const list = field.args
        .filter(
          (a) => isNonNullType(a.type) || ['registry', 'repository', 'name', 'reference'].includes(a.name),
        )
        .map((a) => {
          const v = `${prefix}_${a.name}`;
          defs.push(`$${v}: ${String(a.type)}`);
          variables[v] = valueFor(a.name, a.type, `${op.field}.${a.name}`);
          return `${a.name}: $${v}`;
        });
      return list.length ? `(${list.join(', ')})` : '';
    };
    const selection = (type: GraphQLOutputType) =>
      isObjectType(getNamedType(type)) ? ' { __typename }' : '';
    if (op.parentType === 'Query' || op.parentType === 'Mutation') {
      const field = (
        op.parentType === 'Query' ? schema.getQueryType() : schema.getMutationType()
      )!.getFields()[op.field];
      const body = `${op.field}${args(field, 'a')}${selection(field.type)}`;
      const kind = op.parentType === 'Query' ? 'query' : 'mutation';
      return { query: `${kind}${defs.length ? `(${defs.join(', ')})` : ''} { ${body} }`, variables };
    }
    // A root query returning the parent type, e.g. `registry(name:) { repositories { … } }`.
    const parentType = schema.getType(op.parentType) as GraphQLObjectType;
    const root = Object.values(schema.getQueryType()!.getFields()).find(
      (f) =>
        getNamedType(f.type) === parentType && !isListType(isNonNullType(f.type) ? f.type.ofType : f.type),
    );
    if (!root) throw new Error(`no root query returns ${op.parentType}; extend the matrix for ${op.key}`);
    const field = parentType.getFields()[op.field];
    const inner = `${op.field}${args(field, 'f')}${selection(field.type)}`;
    const outer = `${root.name}${args(root, 'r')} { ${inner} }`;
    return {
      query: `query${defs.length ? `(${defs.join(', ')})` : ''} { ${outer} }`,
      variables,
      parent: `GraphQL Query.${root.name}`,
    };
  }

  function valueFor(name: string, type: GraphQLInputType, path: string): unknown {
    if (isNonNullType(type)) return valueFor(name, type.ofType, path);
    if (isListType(type)) return [valueFor(name, type.ofType, path)];
    if (isInputObjectType(type))
      return Object.fromEntries(
        Object.values(type.getFields())
          .filter((f) => isNonNullType(f.type) && f.defaultValue === undefined)
          .map((f) => [f.name, valueFor(f.name, f.type, `${path}.${f.name}`)]),
      );
    if (isEnumType(type)) return type.getValues()[0].value;
    const named: Record<string, unknown> = {
      'createRegistry.input.name': 'matrix-gql',
      registry: 'alpha',
      name: 'alpha',
      repository: 'team-a/api',
      reference: 'v1',
      url: registry.url,
    };
    if (path in named) return named[path];
    if (name in named) return named[name];
    if (isScalarType(type))
      return (
        { Int: 1, Float: 1, Boolean: false, ID: randomUUID(), DateTime: new Date().toISOString() }[
          type.name
        ] ?? 'x'
      );
    return 'x';
  }

  it('GraphQL: the same matrix over every query, mutation and field resolver', async () => {
    const problems: string[] = [];
    const policies = new Map(graphql.map((op) => [op.key, policyOf(op)]));
    for (const op of graphql) {
      const policy = policies.get(op.key)!;
      if (policy === 'undeclared' || policy === 'handler-decides' || policy === 'public') continue;
      const doc = documentFor(op);
      const parentPolicy = doc.parent ? policies.get(doc.parent) : undefined;
      const send = (token: string | null) => {
        const req = request(gw.server).post('/graphql');
        return (token ? req.set(bearer(token)) : req).send({ query: doc.query, variables: doc.variables });
      };
      const codes = (body: { errors?: { extensions?: { code?: string } }[] }) =>
        (body.errors ?? []).map((e) => e.extensions?.code);
      const anonymous = await send(null);
      if (!codes(anonymous.body).includes('UNAUTHENTICATED'))
        problems.push(`${op.key}: anonymous got ${anonymous.text.slice(0, 200)}`);
      await inBatches(principals, 5, async (p) => {
        const res = await send(p.token);
        const c = codes(res.body);
        if (res.status !== 200 || c.includes('GRAPHQL_VALIDATION_FAILED') || c.includes('BAD_USER_INPUT')) {
          problems.push(`${op.key} as ${p.label}: the document does not run: ${res.text.slice(0, 200)}`);
          return;
        }
        const expected =
          allowed(policy, p) &&
          (!parentPolicy || typeof parentPolicy !== 'object' || allowed(parentPolicy as Policy, p));
        if (expected && (c.includes('FORBIDDEN') || c.includes('UNAUTHENTICATED')))
          problems.push(`${op.key} as ${p.label}: expected allowed, got ${res.text.slice(0, 200)}`);
        if (!expected && !c.includes('FORBIDDEN'))
          problems.push(`${op.key} as ${p.label}: expected FORBIDDEN, got ${res.text.slice(0, 200)}`);
      });
      await ensureAlpha();
    }
    expect(problems).toEqual([]);
  }, 300_000);
});

@Controller('api/v1/undeclared')
class UndeclaredController {
  @Get()
  hello() {
    return { reached: true };
  }
}

@Module({ controllers: [UndeclaredController] })
class UndeclaredModule {}

describe('a route that declares nothing', () => {
  let env: TestEnvironment;
  let app: NestFastifyApplication;

  beforeAll(async () => {
    env = await TestEnvironment.create('auth_undeclared');
    const moduleRef = await Test.createTestingModule({
      imports: [AppModule.forRoot(testConfig(env)), UndeclaredModule],
    }).compile();
    app = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter());
    app.useGlobalFilters(new AllExceptionsFilter());
    await app.init();
    await app.getHttpAdapter().getInstance().ready();
  });

  afterAll(async () => {
    await app?.close();
    await env?.destroy();
  });

  it('is denied to everyone, the admin included (fail closed), and the matrix reports it', async () => {
    const res = await adminRequest(app.getHttpServer()).get('/api/v1/undeclared').expect(403);
    expect(res.body.error).toMatchObject({ code: 'FORBIDDEN', details: { permission: null } });
    expect(JSON.stringify(res.body)).not.toContain('reached');
    await request(app.getHttpServer()).get('/api/v1/undeclared').expect(401);
    const found = restRoutes(app).find((r) => r.key === 'GET /api/v1/undeclared');
    expect(found).toBeDefined();
    expect(policyOf(found!)).toBe('undeclared');
  });
});
