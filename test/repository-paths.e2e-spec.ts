import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminRequest,
  boundServiceAccount,
  bearer,
  TestEnvironment,
  TestGateway,
  startApi,
} from './support/gateway.js';
import { ImagePusher } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';

/*
 * Repository names may have `tags` and `manifests` components. The guard authorizes the repository a
 * catalog path names exactly as the handler then reads it: a binding on team-a/api never lists the tags
 * of team-a/api/tags, and a binding on team-a/api/tags does.
 */

describe('the repository of a catalog path, for the guard and the handler alike', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let registry: RegistryProcess;
  const tokens: Record<string, string> = {};

  async function principal(name: string, role: string, scope: { registry?: string; repository?: string }) {
    tokens[name] = (await boundServiceAccount(gw.server, name, role, scope)).token;
  }

  const get = (who: string, path: string) =>
    request(gw.server).get(`/api/v1/registries/alpha/repositories/${path}`).set(bearer(tokens[who]));

  beforeAll(async () => {
    env = await TestEnvironment.create('repository_paths');
    registry = await RegistryProcess.start();
    const pusher = new ImagePusher(registry.url);
    await pusher.pushImage('team-a/api', ['v1'], { seed: 'api' });
    await pusher.pushImage('team-a/api/tags', ['secret-tag'], { seed: 'tags' });
    await pusher.pushImage('team-a/api/manifests', ['hidden-tag'], { seed: 'manifests' });
    await pusher.close();
    gw = await startApi(env);
    await adminRequest(gw.server)
      .post('/api/v1/registries')
      .send({ name: 'alpha', url: registry.url })
      .expect(201);
    await principal('viewer-api', 'viewer', { registry: 'alpha', repository: 'team-a/api' });
    await principal('viewer-api-tags', 'viewer', { registry: 'alpha', repository: 'team-a/api/tags' });
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await registry?.cleanup();
    await env?.destroy();
  });

  it('a binding on team-a/api reads team-a/api, not the repositories below it', async () => {
    const own = await get('viewer-api', 'team-a/api/tags').expect(200);
    expect(own.body.repository).toBe('team-a/api');
    expect(own.body.items.map((t: { name: string }) => t.name)).toEqual(['v1']);

    for (const path of ['team-a/api/tags/tags', 'team-a/api/tags/tags/', 'team-a/api/manifests/tags']) {
      const res = await get('viewer-api', path);
      expect(res.status, path).toBe(403);
      expect(res.body.error.code).toBe('FORBIDDEN');
      expect(res.text).not.toMatch(/secret-tag|hidden-tag/);
    }
    const refused = await get('viewer-api', 'team-a/api/tags/tags').expect(403);
    expect(refused.body.error.details).toMatchObject({ registry: 'alpha', repository: 'team-a/api/tags' });
    await get('viewer-api', 'team-a/api/tags/manifests/secret-tag').expect(403);
  });

  it('a binding on team-a/api/tags reads its tags and manifests through the same paths', async () => {
    const tags = await get('viewer-api-tags', 'team-a/api/tags/tags').expect(200);
    expect(tags.body.repository).toBe('team-a/api/tags');
    expect(tags.body.items.map((t: { name: string }) => t.name)).toEqual(['secret-tag']);
    const manifest = await get('viewer-api-tags', 'team-a/api/tags/manifests/secret-tag').expect(200);
    expect(manifest.body.repository).toBe('team-a/api/tags');
    await get('viewer-api-tags', 'team-a/api/tags').expect(403);
  });

  it('reads slashes sent as %2F (as generated OpenAPI clients send the {path} parameter) as slashes, for the guard too', async () => {
    const own = await get('viewer-api', 'team-a%2Fapi/tags').expect(200);
    expect(own.body.repository).toBe('team-a/api');
    expect(own.body.items.map((t: { name: string }) => t.name)).toEqual(['v1']);
    const encoded = await get('viewer-api', 'team-a%2Fapi%2Ftags%2Ftags').expect(403);
    expect(encoded.body.error.details).toMatchObject({ registry: 'alpha', repository: 'team-a/api/tags' });
    expect((await get('viewer-api-tags', 'team-a%2Fapi%2Ftags/tags').expect(200)).body.repository).toBe(
      'team-a/api/tags',
    );
  });
});
