/**
 * Records the Distribution 2.8 fixtures of src/gc/fixtures/ from the real Debian `docker-registry`:
 *
 *   npx tsx test/support/record-gc-fixtures.ts
 *
 * Scenario (fixed seeds, so the digests are the same on every run): team/app has v1 (2 layers), v2,
 * and an untagged image pushed by digest; v1 is deleted through the API; multi/arch has a tagged
 * two-platform OCI index. Then, on the same storage: a dry run, a real run, a dry run with
 * --delete-untagged, a real run with --delete-untagged (log level info, so the registry logs each
 * deletion), a run whose storage lost a tagged manifest's blob (skipped, its blobs swept), a run with a
 * corrupt manifest blob (fails), and a run with a missing config.
 */
import { spawnSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImagePusher, MANIFEST_ACCEPT } from './image-pusher.js';
import { RegistryProcess } from './registry-process.js';

const FIXTURES = fileURLToPath(new URL('../../src/gc/fixtures/', import.meta.url));

async function main(): Promise<void> {
  const registry = await RegistryProcess.start({ logLevel: 'info' });
  const pusher = new ImagePusher(registry.url);
  const facts: Record<string, unknown> = {};
  try {
    const v1 = await pusher.pushImage('team/app', ['v1'], { seed: 'fixture-v1', layers: 2 });
    const v2 = await pusher.pushImage('team/app', ['v2'], { seed: 'fixture-v2' });
    const untagged = await pusher.pushImage('team/app', [], {
      seed: 'fixture-untagged',
      pushByDigestOnly: true,
    });
    const index = await pusher.pushIndex(
      'multi/arch',
      ['latest'],
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
      { seed: 'fixture-index' },
    );
    const del = await fetch(`${registry.url}/v2/team/app/manifests/${v1.digest}`, { method: 'DELETE' });
    if (del.status !== 202) throw new Error(`DELETE answered ${del.status}`);
    Object.assign(facts, {
      v1: { digest: v1.digest, config: v1.config.digest, layers: v1.layers.map((l) => l.digest) },
      v2: { digest: v2.digest, config: v2.config.digest, layers: v2.layers.map((l) => l.digest) },
      untagged: {
        digest: untagged.digest,
        config: untagged.config.digest,
        layers: untagged.layers.map((l) => l.digest),
      },
      index: {
        digest: index.digest,
        children: index.children.map((c) => ({
          digest: c.digest,
          config: c.config.digest,
          layers: c.layers.map((l) => l.digest),
        })),
      },
    });

    const runs: [string, { dryRun?: boolean; deleteUntagged?: boolean }][] = [
      ['gc-2.8-dry-run.txt', { dryRun: true }],
      ['gc-2.8-real-run.txt', {}],
      ['gc-2.8-dry-run-delete-untagged.txt', { dryRun: true, deleteUntagged: true }],
      ['gc-2.8-delete-untagged.txt', { deleteUntagged: true }],
    ];
    for (const [file, args] of runs) {
      const { code, output } = await registry.garbageCollect(args);
      if (code !== 0) throw new Error(`${file}: exit ${code}\n${output}`);
      await writeFile(join(FIXTURES, file), output);
    }
    const children: Record<string, number> = {};
    for (const child of index.children) {
      const res = await fetch(`${registry.url}/v2/multi/arch/manifests/${child.digest}`, {
        headers: { accept: MANIFEST_ACCEPT },
      });
      children[child.digest] = res.status;
    }
    facts.afterDeleteUntagged = {
      index: (
        await fetch(`${registry.url}/v2/multi/arch/manifests/latest`, {
          headers: { accept: MANIFEST_ACCEPT },
        })
      ).status,
      children,
    };

    // a tagged manifest whose blob vanished from storage: 2.8 skips the rest of the repository (it
    // takes the error for an unfinished upload) and sweeps that image's config and layers
    const hex = v2.digest.slice('sha256:'.length);
    await rm(join(registry.rootDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex), {
      recursive: true,
      force: true,
    });
    const skipped = await registry.garbageCollect({ dryRun: true });
    facts.missingManifestBlobExitCode = skipped.code;
    await writeFile(join(FIXTURES, 'gc-2.8-missing-manifest-blob.txt'), skipped.output);

    // a manifest blob that is not a manifest: marking fails and nothing is swept
    const indexHex = index.digest.slice('sha256:'.length);
    await writeFile(
      join(registry.rootDir, 'docker/registry/v2/blobs/sha256', indexHex.slice(0, 2), indexHex, 'data'),
      'not a manifest',
    );
    const failed = await registry.garbageCollect({ dryRun: true });
    facts.failedExitCode = failed.code;
    await writeFile(join(FIXTURES, 'gc-2.8-failed.txt'), failed.output);

    const missing = spawnSync('docker-registry', ['garbage-collect', '/nonexistent/config.yml'], {
      encoding: 'utf8',
    });
    facts.missingConfigExitCode = missing.status;
    await writeFile(join(FIXTURES, 'gc-2.8-missing-config.txt'), missing.stdout + missing.stderr);

    await writeFile(join(FIXTURES, 'gc-2.8-scenario.json'), JSON.stringify(facts, null, 2) + '\n');
    console.log(JSON.stringify(facts, null, 2));
  } finally {
    await pusher.close();
    await registry.cleanup();
  }
}

await main();
