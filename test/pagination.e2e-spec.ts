import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';
import { ImagePusher, seedManyRepositories } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';

const REPOSITORIES = 1_100;

describe('catalog pagination beyond the upstream page limit', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let registry: RegistryProcess;
  let names: string[];

  beforeAll(async () => {
    env = await TestEnvironment.create('pagination');
    registry = await RegistryProcess.start();
    const pusher = new ImagePusher(registry.url);
    names = (
      await seedManyRepositories(pusher, { prefix: 'ci', repositories: REPOSITORIES, tagsPerRepository: 1 })
    ).repositories;
    await pusher.close();
    // A small upstream page forces the gateway to follow many Link headers.
    gw = await startApi(env, { CATALOG_PAGE_SIZE: '250' });
    await adminRequest(gw.server)
      .post('/api/v1/registries')
      .send({ name: 'big', url: registry.url })
      .expect(201);
  }, 300_000);

  afterAll(async () => {
    await gw?.close();
    await registry?.cleanup();
    await env?.destroy();
  });

  it('walks more than 1,000 repositories with cursors, each exactly once, in order', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: request.Response = await adminRequest(gw.server)
        .get('/api/v1/registries/big/repositories')
        .query({ limit: 400, ...(cursor ? { cursor } : {}) })
        .expect(200);
      seen.push(...res.body.items.map((r: { name: string }) => r.name));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([...names].sort());
  });

  it('returns 1,000 in one page when asked', async () => {
    const res = await adminRequest(gw.server)
      .get('/api/v1/registries/big/repositories?limit=1000')
      .expect(200);
    expect(res.body.items).toHaveLength(1000);
    expect(res.body.nextCursor).toEqual(expect.any(String));
  });
});
