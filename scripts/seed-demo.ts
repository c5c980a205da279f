/**
 * Fills a registry with a few sample images for the quick start: tags sharing a digest, a multi-arch
 * index, CI build tags to clean up, and a repository emptied by a delete (hidden by the gateway).
 * Usage: npx tsx scripts/seed-demo.ts http://127.0.0.1:5000 [username password]
 * Idempotent: the same seeds give the same digests, so running it again changes nothing.
 */
import { ImagePusher } from '../test/support/image-pusher.js';

async function main() {
  const [url, username, password] = process.argv.slice(2);
  if (!url) throw new Error('usage: seed-demo.ts <registry-url> [username password]');
  const pusher = new ImagePusher(url, username ? { username, password } : {});
  try {
    await pusher.pushImage('library/alpine', ['3.19', 'latest'], {
      format: 'docker',
      layers: 2,
      layerSize: 64 * 1024,
      seed: 'demo-alpine-3.19',
    });
    await pusher.pushImage('library/alpine', ['3.18'], {
      format: 'docker',
      layers: 2,
      layerSize: 64 * 1024,
      seed: 'demo-alpine-3.18',
      created: new Date('2023-05-09T00:00:00Z'),
    });
    await pusher.pushIndex(
      'team-a/api',
      ['v1', 'stable'],
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
      { seed: 'demo-api-v1', layerSize: 32 * 1024 },
    );
    await pusher.pushIndex(
      'team-a/api',
      ['v2'],
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
      { seed: 'demo-api-v2', layerSize: 32 * 1024 },
    );
    await pusher.pushImage('team-a/worker', ['1.0.0'], { seed: 'demo-worker', layerSize: 16 * 1024 });
    for (let i = 1; i <= 6; i++) {
      await pusher.pushImage('ci/build-cache', [`build-${i}`], {
        seed: `demo-build-${i}`,
        layerSize: 128 * 1024,
        created: new Date(Date.UTC(2026, 0, i)),
      });
    }
    const retired = await pusher.pushImage('team-b/retired', ['old'], { seed: 'demo-retired' });
    const res = await fetch(`${url.replace(/\/+$/, '')}/v2/team-b/retired/manifests/${retired.digest}`, {
      method: 'DELETE',
      headers: username
        ? { authorization: `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}` }
        : {},
    });
    if (res.status !== 202 && res.status !== 404)
      throw new Error(`deleting team-b/retired answered ${res.status}`);
    console.log(
      `demo images are in ${url}: library/alpine, team-a/api (multi-arch), team-a/worker, ci/build-cache`,
    );
  } finally {
    await pusher.close();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
