import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import type { INestApplication } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { RESOLVER_NAME_METADATA, RESOLVER_PROPERTY_METADATA, RESOLVER_TYPE_METADATA } from '@nestjs/graphql';
import type { IntrospectionQuery, IntrospectionType } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_DECLARATION, type AuthDeclaration } from '../src/auth/auth.decorators.js';
import { PERMISSIONS, type Permission } from '../src/auth/permissions.js';
import { GC_STATUSES } from '../src/gc/gc.dto.js';
import { DELIVERY_STATUSES } from '../src/webhooks/webhook.dto.js';
import { adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';

// The copy of graphql that built the schema (see auth-matrix.e2e-spec.ts).
const { getIntrospectionQuery } = createRequire(import.meta.url)('graphql') as typeof import('graphql');

/*
 * The README promises that every type and field of the GraphQL schema has a description, and that the
 * description of an operation names the permission it needs. The schema is read as a client reads it
 * (an introspection query over HTTP); the permissions come from the resolvers' own declarations.
 */

const BUILT_IN_SCALARS = ['String', 'Int', 'Float', 'Boolean', 'ID'];
const ROOTS = ['Query', 'Mutation', 'Subscription'];

/** A declared permission, as a word: `deletions:read` is not found inside `deletions:read-own`. */
const permissionPattern = (p: Permission) =>
  new RegExp(`(?<![\\w:-])${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w:-])`);

/** The first sentence: up to a full stop followed by a new sentence. */
const firstSentence = (text: string) => text.split(/(?<=[.!?])\s+(?=[A-Z`])/)[0];

/** Every resolver method (root fields and field resolvers) and what it declares. */
function resolverDeclarations(app: INestApplication): Map<string, AuthDeclaration | undefined> {
  const found = new Map<string, AuthDeclaration | undefined>();
  const seen = new Set<unknown>();
  for (const module of app.get(ModulesContainer).values())
    for (const wrapper of module.providers.values()) {
      const cls = wrapper.metatype as (new (...a: never[]) => object) | null;
      if (!cls || typeof cls !== 'function' || !cls.prototype || seen.has(cls)) continue;
      seen.add(cls);
      const parentOfFields = Reflect.getMetadata(RESOLVER_TYPE_METADATA, cls) as string | undefined;
      for (let p = cls.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p))
        for (const name of Object.getOwnPropertyNames(p)) {
          const fn = Object.getOwnPropertyDescriptor(p, name)?.value as unknown;
          if (name === 'constructor' || typeof fn !== 'function') continue;
          const type = Reflect.getMetadata(RESOLVER_TYPE_METADATA, fn) as string | undefined;
          const isField = Reflect.getMetadata(RESOLVER_PROPERTY_METADATA, fn) === true;
          if (!isField && !ROOTS.includes(type ?? '')) continue;
          const field = (Reflect.getMetadata(RESOLVER_NAME_METADATA, fn) as string | undefined) ?? name;
          found.set(
            `${isField ? parentOfFields : type}.${field}`,
            (Reflect.getMetadata(AUTH_DECLARATION, fn) ?? Reflect.getMetadata(AUTH_DECLARATION, cls)) as
              AuthDeclaration | undefined,
          );
        }
    }
  return found;
}

describe('GraphQL schema descriptions', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let schema: IntrospectionQuery['__schema'];
  let declarations: Map<string, AuthDeclaration | undefined>;

  beforeAll(async () => {
    env = await TestEnvironment.create('graphql_descriptions');
    gw = await startApi(env);
    const res = await adminRequest(gw.server)
      .post('/graphql')
      .send({ query: getIntrospectionQuery({ descriptions: true, inputValueDeprecation: true }) })
      .expect(200);
    expect(res.body.errors).toBeUndefined();
    schema = (res.body.data as IntrospectionQuery).__schema;
    declarations = resolverDeclarations(gw.app);
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await env?.destroy();
  });

  /** The schema's own types: no introspection types, no built-in scalars. */
  const ownTypes = (): IntrospectionType[] =>
    schema.types.filter((t) => !t.name.startsWith('__') && !BUILT_IN_SCALARS.includes(t.name));

  it('describes every type, field, argument, input field and enum value', () => {
    const missing: string[] = [];
    const check = (what: string, description: string | null | undefined) => {
      if (!description?.trim()) missing.push(what);
    };
    const types = ownTypes();
    // Not vacuous: the whole schema was read.
    expect(types.map((t) => t.name)).toEqual(expect.arrayContaining([...ROOTS, 'AuditEvent', 'GcRun']));
    for (const type of types) {
      check(`type ${type.name}`, type.description);
      if (type.kind === 'OBJECT' || type.kind === 'INTERFACE')
        for (const field of type.fields) {
          check(`field ${type.name}.${field.name}`, field.description);
          for (const arg of field.args)
            check(`argument ${type.name}.${field.name}(${arg.name})`, arg.description);
        }
      if (type.kind === 'INPUT_OBJECT')
        for (const field of type.inputFields)
          check(`input field ${type.name}.${field.name}`, field.description);
      if (type.kind === 'ENUM')
        for (const value of type.enumValues)
          check(`enum value ${type.name}.${value.name}`, value.description);
    }
    const byKind = Object.entries(
      missing.reduce<Record<string, number>>((n, m) => {
        const kind = m.slice(0, m.lastIndexOf(' '));
        n[kind] = (n[kind] ?? 0) + 1;
        return n;
      }, {}),
    )
      .map(([kind, n]) => `${n} ${kind}`)
      .join(', ');
    expect(missing, `${missing.length} schema elements without a description (${byKind})`).toEqual([]);
  });

  it('names, in the first sentence of each operation and guarded field, the permission it needs', () => {
    const problems: string[] = [];
    const rootFields = ownTypes()
      .filter((t) => ROOTS.includes(t.name) && t.kind === 'OBJECT')
      .flatMap((t) => (t.kind === 'OBJECT' ? t.fields.map((f) => ({ type: t.name, field: f })) : []));
    expect(rootFields.length).toBeGreaterThanOrEqual(30);
    // Root fields, and field resolvers that declare something of their own.
    const guarded = [
      ...rootFields,
      ...ownTypes()
        .filter((t) => !ROOTS.includes(t.name))
        .flatMap((t) =>
          t.kind === 'OBJECT'
            ? t.fields
                .filter((f) => declarations.has(`${t.name}.${f.name}`))
                .map((f) => ({ type: t.name, field: f }))
            : [],
        ),
    ];
    for (const { type, field } of guarded) {
      const key = `${type}.${field.name}`;
      const summary = firstSentence(field.description ?? '');
      if (!declarations.has(key)) {
        problems.push(`${key}: no resolver found for it`);
        continue;
      }
      const declaration = declarations.get(key);
      if (!declaration) problems.push(`${key}: declares no permission, @Authenticated or @Public`);
      else if (declaration.kind === 'authenticated') {
        if (!/any authenticated caller/i.test(summary))
          problems.push(`${key}: @Authenticated, but "${summary}" does not say "any authenticated caller"`);
      } else if (declaration.kind === 'public') {
        if (!/\bpublic\b|no authentication/i.test(summary))
          problems.push(`${key}: @Public, but "${summary}" does not say it is public`);
      } else {
        const unnamed = declaration.permissions.filter((p) => !permissionPattern(p).test(summary));
        if (unnamed.length) problems.push(`${key}: "${summary}" does not name ${unnamed.join(', ')}`);
      }
    }
    // Every permission named is a real one (a typo would name nothing the guard checks).
    const known = new Set<string>(PERMISSIONS);
    for (const { type, field } of guarded)
      for (const m of (field.description ?? '').matchAll(/\b[a-z]+:[a-z]+(?:-[a-z]+)*\b/g))
        if (/^(registries|catalog|deletions|gc|audit|webhooks|access|queues):/.test(m[0]) && !known.has(m[0]))
          problems.push(`${type}.${field.name}: names ${m[0]}, which is no permission`);
    expect(problems).toEqual([]);
  });

  it('filters gcRuns and webhookDeliveries by enums of exactly the statuses REST accepts', async () => {
    const enumValues = (name: string) => {
      const type = schema.types.find((t) => t.name === name);
      return type?.kind === 'ENUM' ? type.enumValues.map((v) => v.name).sort() : [];
    };
    expect(enumValues('GcRunStatus')).toEqual([...GC_STATUSES].sort());
    expect(enumValues('WebhookDeliveryStatus')).toEqual([...DELIVERY_STATUSES].sort());
    const argType = (field: string) => {
      const query = schema.types.find((t) => t.name === 'Query');
      const arg = query?.kind === 'OBJECT' ? query.fields.find((f) => f.name === field)?.args : undefined;
      return arg?.find((a) => a.name === 'status')?.type;
    };
    expect(argType('gcRuns')).toMatchObject({ kind: 'ENUM', name: 'GcRunStatus' });
    expect(argType('webhookDeliveries')).toMatchObject({ kind: 'ENUM', name: 'WebhookDeliveryStatus' });

    const gql = (query: string, variables: Record<string, unknown> = {}) =>
      adminRequest(gw.server).post('/graphql').send({ query, variables });
    for (const status of GC_STATUSES) {
      const res = await gql(`query($s: GcRunStatus) { gcRuns(status: $s) { items { id status } } }`, {
        s: status,
      });
      expect(res.body, status).toEqual({ data: { gcRuns: { items: [] } } });
    }
    const unknown = await gql(`{ gcRuns(status: paused) { items { id } } }`);
    expect(unknown.body.errors?.[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
    const deliveries = await gql(
      `query($id: ID!) { webhookDeliveries(webhookId: $id, status: dead) { items { id } } }`,
      { id: randomUUID() },
    );
    expect(deliveries.body.errors?.[0].extensions.code).toBe('WEBHOOK_NOT_FOUND');

    // REST reads the same values from the query string, as before.
    for (const status of GC_STATUSES)
      await adminRequest(gw.server).get(`/api/v1/gc-runs?status=${status}`).expect(200);
    const refused = await adminRequest(gw.server).get('/api/v1/gc-runs?status=paused').expect(400);
    expect(refused.body.error.code).toBe('VALIDATION_FAILED');
    const hook = `/api/v1/webhooks/${randomUUID()}/deliveries`;
    for (const status of DELIVERY_STATUSES)
      await adminRequest(gw.server).get(`${hook}?status=${status}`).expect(404);
    await adminRequest(gw.server).get(`${hook}?status=paused`).expect(400);
  });
});
