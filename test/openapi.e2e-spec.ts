import { randomUUID } from 'node:crypto';
import { compileErrors, validate } from '@readme/openapi-parser';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';

interface Parameter {
  name: string;
  in: string;
  description?: string;
  schema?: { format?: string; type?: string };
}
interface MediaType {
  schema?: { $ref?: string };
  examples?: Record<string, { value?: { error?: { code?: string } } }>;
}
interface Response {
  description: string;
  content?: Record<string, MediaType>;
}
interface Operation {
  parameters?: Parameter[];
  responses: Record<string, Response>;
}
interface Schema {
  type?: string;
  required?: string[];
  properties?: Record<string, { $ref?: string; type?: string }>;
}
interface Document {
  paths: Record<string, Record<string, Operation> & { parameters?: Parameter[] }>;
  components: { schemas: Record<string, Schema> };
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];
const ERROR_REF = '#/components/schemas/ErrorResponse';
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Every operation as `GET /path`, with its path-level parameters in front of its own. */
function operations(doc: Document): { key: string; path: string; method: string; op: Operation }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => METHODS.includes(method))
      .map(([method, op]) => ({
        key: `${method.toUpperCase()} ${path}`,
        path,
        method,
        op: {
          ...(op as Operation),
          parameters: [...(item.parameters ?? []), ...((op as Operation).parameters ?? [])],
        },
      })),
  );
}

/** The error codes an operation documents for a status: the example names of its error body. */
function documentedCodes(op: Operation, status: number): string[] {
  const examples = op.responses[String(status)]?.content?.['application/json']?.examples ?? {};
  return Object.values(examples).map((e) => e.value?.error?.code ?? '?');
}

describe('the OpenAPI document', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let doc: Document;

  beforeAll(async () => {
    env = await TestEnvironment.create('openapi');
    gw = await startApi(env);
    doc = (await request(gw.server).get('/docs/openapi.json').expect(200)).body as Document;
  });

  afterAll(async () => {
    await gw?.close();
    await env?.destroy();
  });

  it('is a valid OpenAPI document', async () => {
    // The OpenAPI 3.0 schema, and what it cannot say: path templates and parameters agree, parameters
    // and operation ids are unique. validate() dereferences in place: it gets a copy.
    const result = await validate(structuredClone(doc) as never);
    expect(result.valid ? '' : compileErrors(result)).toBe('');
    expect(result.warnings).toEqual([]);
  });

  it('declares every variable of a path template as a path parameter, and no other', () => {
    const problems: string[] = [];
    for (const { key, path, op } of operations(doc)) {
      const variables = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      const declared = op.parameters!.filter((p) => p.in === 'path').map((p) => p.name);
      for (const v of variables) if (!declared.includes(v)) problems.push(`${key}: no path parameter "${v}"`);
      for (const d of declared)
        if (!variables.includes(d)) problems.push(`${key}: "${d}" is not in the path`);
      const seen = op.parameters!.map((p) => `${p.in}:${p.name}`);
      for (const s of new Set(seen))
        if (seen.filter((x) => x === s).length > 1) problems.push(`${key}: ${s} declared twice`);
    }
    expect(problems).toEqual([]);
  });

  it('names every parameter with an identifier', () => {
    const bad = operations(doc).flatMap(({ key, op }) =>
      op.parameters!.filter((p) => !IDENTIFIER.test(p.name)).map((p) => `${key}: ${p.in} "${p.name}"`),
    );
    expect(bad).toEqual([]);
  });

  it('documents the ids of stored records as uuids', () => {
    const ids = operations(doc).flatMap(({ key, op }) =>
      op.parameters!.filter((p) => p.in === 'path' && /^(id|\w+Id)$/.test(p.name)).map((p) => ({ key, p })),
    );
    expect(ids.length).toBeGreaterThanOrEqual(20);
    expect(
      ids.filter(({ p }) => p.schema?.format !== 'uuid').map(({ key, p }) => `${key}: ${p.name}`),
    ).toEqual([]);
  });

  it('documents the repository paths as one parameter, with the sub-paths it takes', () => {
    const item = doc.paths['/api/v1/registries/{registry}/repositories/{path}'];
    expect(Object.keys(item).sort()).toEqual(['delete', 'get']);
    const path = (op: Operation) => op.parameters!.find((p) => p.name === 'path')!;
    expect(path(item.get).description).toMatch(/<repository>\/tags\b/);
    expect(path(item.get).description).toMatch(/<repository>\/manifests\/<reference>/);
    expect(path(item.delete).description).toMatch(/<repository>\/manifests\/<reference>/);
    expect(path(item.delete).description).toMatch(/<repository>\/tags\/<tag>/);
    // Both answers of each are documented, not only in prose.
    expect(Object.keys(item.get.responses)).toContain('200');
    expect(Object.keys(item.delete.responses)).toEqual(expect.arrayContaining(['201', '202']));
  });

  it('documents an answer and a 4xx error body on every API operation, and every error with the error body', () => {
    const problems: string[] = [];
    for (const { key, path, op } of operations(doc)) {
      const statuses = Object.keys(op.responses);
      if (!statuses.some((s) => /^2\d\d$/.test(s))) problems.push(`${key}: no 2xx answer`);
      if (!path.startsWith('/api/')) continue; // health probes: 200 or 503, never a client error
      const errors = statuses.filter((s) => /^[45]\d\d$/.test(s));
      if (!errors.some((s) => s.startsWith('4'))) problems.push(`${key}: no 4xx answer`);
      for (const s of errors) {
        const content = op.responses[s].content ?? {};
        if (
          Object.keys(content).join() !== 'application/json' ||
          content['application/json'].schema?.$ref !== ERROR_REF
        )
          problems.push(`${key}: ${s} is not documented as the error body`);
        else if (!documentedCodes(op, Number(s)).every((c) => /^[A-Z][A-Z0-9_]*$/.test(c)))
          problems.push(`${key}: ${s} has an example without its code`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('describes the error body the gateway sends', async () => {
    const { ErrorResponse, ErrorBody } = doc.components.schemas;
    expect(ErrorResponse).toMatchObject({
      required: ['error'],
      properties: { error: { $ref: '#/components/schemas/ErrorBody' } },
    });
    expect(Object.keys(ErrorBody.properties!).sort()).toEqual(['code', 'details', 'message', 'requestId']);
    expect(ErrorBody.required!.sort()).toEqual(['code', 'message', 'requestId']);
    const sent = (await request(gw.server).get('/api/v1/registries').expect(401)).body;
    expect(Object.keys(sent)).toEqual(['error']);
    for (const field of ErrorBody.required!) expect(sent.error).toHaveProperty(field);
    for (const field of Object.keys(sent.error)) expect(ErrorBody.properties).toHaveProperty(field);
  });

  it('documents the codes the API answers with', async () => {
    const id = randomUUID();
    const cases: [method: 'get' | 'post' | 'delete', url: string, admin: boolean][] = [
      ['get', '/api/v1/registries', false],
      ['get', '/api/v1/registries/absent', true],
      ['post', '/api/v1/registries', true],
      ['get', '/api/v1/registries/absent/health', true],
      ['get', '/api/v1/registries/absent/repositories', true],
      ['get', '/api/v1/registries/absent/repositories/team-a/api/tags', true],
      ['get', '/api/v1/registries/absent/repositories/team-a/api/manifests/v1', true],
      ['get', '/api/v1/registries/absent/repositories/team-a/api/blobs', true],
      ['get', `/api/v1/registries/absent/repositories/${'a/'.repeat(600)}tags`, true],
      ['delete', '/api/v1/registries/absent/repositories/team-a/api/tags/v1', true],
      ['delete', '/api/v1/registries/absent/repositories/Team-A/manifests/v1', true],
      ['post', '/api/v1/registries/absent/events', false],
      ['post', '/api/v1/deletions', true],
      ['get', `/api/v1/deletions/${id}`, true],
      ['get', '/api/v1/deletions/not-a-uuid', true],
      ['get', `/api/v1/deletions/${id}/items`, true],
      ['post', `/api/v1/deletions/${id}/execute`, true],
      ['post', `/api/v1/deletions/${id}/cancel`, true],
      ['post', '/api/v1/registries/absent/gc', true],
      ['get', `/api/v1/gc-runs/${id}`, true],
      ['get', `/api/v1/gc-runs/${id}/output`, true],
      ['post', `/api/v1/gc-runs/${id}/cancel`, true],
      ['get', '/api/v1/gc-runs?limit=0', true],
      ['get', '/api/v1/registries/absent/gc-settings', true],
      ['delete', '/api/v1/registries/absent/gc-settings', true],
      ['get', '/api/v1/audit-events?limit=0', true],
      ['get', `/api/v1/webhooks/${id}`, true],
      ['get', `/api/v1/webhooks/${id}/deliveries`, true],
      ['get', `/api/v1/webhooks/${id}/deliveries/${id}`, true],
      ['post', `/api/v1/webhooks/${id}/deliveries/${id}/redeliver`, true],
      ['post', '/api/v1/webhooks', true],
      ['get', `/api/v1/service-accounts/${id}`, true],
      ['delete', `/api/v1/service-accounts/${id}/tokens/${id}`, true],
      ['get', `/api/v1/role-bindings/${id}`, true],
      ['get', '/api/v1/me', false],
    ];
    const templates = Object.keys(doc.paths).map((path) => ({
      path,
      re: new RegExp(`^${path.replace(/\{path\}/g, '.+').replace(/\{[^}]+\}/g, '[^/]+')}$`),
    }));
    const undocumented: string[] = [];
    for (const [method, url, admin] of cases) {
      const res = await (admin ? adminRequest(gw.server) : request(gw.server))
        [method](url)
        .send(method === 'get' ? undefined : {});
      const code = res.body?.error?.code as string;
      expect(res.status, `${method} ${url}`).toBeGreaterThanOrEqual(400);
      const pathname = url.split('?')[0];
      // The most literal template that matches: /registries/{name} loses to /registries/{registry}/gc.
      const [template] = templates
        .filter((t) => t.re.test(pathname))
        .sort((a, b) => b.path.replace(/\{[^}]+\}/g, '').length - a.path.replace(/\{[^}]+\}/g, '').length);
      const op = template && doc.paths[template.path][method];
      if (!op || !documentedCodes(op, res.status).includes(code))
        undocumented.push(`${method.toUpperCase()} ${template?.path ?? url}: ${res.status} ${code}`);
    }
    expect(undocumented).toEqual([]);
  });
});
