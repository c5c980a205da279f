import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';
import { ImagePusher } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';

/**
 * The catalog when the registry fails for a moment: a gateway with a short upstream timeout in front of
 * a real registry whose storage stalls on one blob.
 */
describe('catalog reads through upstream failures', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let registry: RegistryProcess;
  let pusher: ImagePusher;
  const http = () => adminRequest(gw.server);

  const blobData = (digest: string) => {
    const hex = digest.slice('sha256:'.length);
    return join(registry.rootDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
  };

  /**
   * The blob's stored file becomes a FIFO with no writer: the registry's read of it blocks, so its answer
   * never comes within the gateway's timeout. Returns what puts the blob back.
   */
  async function stall(digest: string): Promise<() => Promise<void>> {
    const data = blobData(digest);
    await rename(data, `${data}.kept`);
    execFileSync('mkfifo', [data]);
    return async () => {
      // Let the registry's blocked open through (it reads an empty file), then put the blob back.
      try {
        closeSync(openSync(data, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // ENXIO: no reader is waiting.
      }
      await rename(`${data}.kept`, data);
    };
  }

  beforeAll(async () => {
    env = await TestEnvironment.create('catalog_upstream_failures');
    registry = await RegistryProcess.start();
    pusher = new ImagePusher(registry.url);
    gw = await startApi(env, { UPSTREAM_TIMEOUT_MS: '1000' });
    await http().post('/api/v1/registries').send({ name: 'main', url: registry.url }).expect(201);
  });

  afterAll(async () => {
    await gw?.close();
    await pusher?.close();
    await registry?.cleanup();
    await env?.destroy();
  });

  it('does not keep the summary of a tag whose config could not be read for the moment', async () => {
    const image = await pusher.pushImage('team/slow', ['v1'], {
      seed: 'slow',
      created: new Date('2025-03-04T05:06:07Z'),
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    });
    const restore = await stall(image.config.digest);
    let during: { body: { items: { name: string; created: string | null; platforms: unknown[] }[] } };
    try {
      during = await http().get('/api/v1/registries/main/repositories/team/slow/tags').expect(200);
    } finally {
      await restore();
    }
    // The config timed out: the tag is listed, what its config says is unknown for now.
    expect(during.body.items).toEqual([
      expect.objectContaining({ name: 'v1', digest: image.digest, created: null, platforms: [] }),
    ]);

    const after = await http().get('/api/v1/registries/main/repositories/team/slow/tags').expect(200);
    expect(after.body.items).toEqual([
      expect.objectContaining({
        name: 'v1',
        digest: image.digest,
        created: '2025-03-04T05:06:07.000Z',
        platforms: [{ os: 'linux', architecture: 'arm64', variant: 'v8' }],
      }),
    ]);
    const manifest = await http()
      .get('/api/v1/registries/main/repositories/team/slow/manifests/v1')
      .expect(200);
    expect(manifest.body.config).toMatchObject({ digest: image.config.digest, architecture: 'arm64' });
  });

  it('does not keep the summary of an index whose child config could not be read for the moment', async () => {
    const index = await pusher.pushIndex(
      'team/multi',
      ['v1'],
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
      { seed: 'multi', created: new Date('2025-06-07T08:09:10Z') },
    );
    const restore = await stall(index.children[1].config.digest);
    let during: { body: { items: { created: string | null }[] } };
    try {
      during = await http().get('/api/v1/registries/main/repositories/team/multi/tags').expect(200);
    } finally {
      await restore();
    }
    expect(during.body.items).toEqual([expect.objectContaining({ name: 'v1', digest: index.digest })]);

    // Neither the index nor its child kept what the failed read left out.
    const after = await http().get('/api/v1/registries/main/repositories/team/multi/tags').expect(200);
    expect(after.body.items).toEqual([
      expect.objectContaining({ name: 'v1', digest: index.digest, created: '2025-06-07T08:09:10.000Z' }),
    ]);
    const child = await http()
      .get(`/api/v1/registries/main/repositories/team/multi/manifests/${index.children[1].digest}`)
      .expect(200);
    expect(child.body.config).toMatchObject({ architecture: 'arm64', created: '2025-06-07T08:09:10.000Z' });
  });
});
