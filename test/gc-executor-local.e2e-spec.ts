import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createExecutor } from '../src/gc/executors/executor-factory.js';
import type { GcExecutor } from '../src/gc/executors/gc-executor.js';
import { parseGcOutput } from '../src/gc/gc-output.js';
import { storageBytes } from './support/storage.js';
import { ImagePusher, MANIFEST_ACCEPT } from './support/image-pusher.js';
import { alive, httpStatus } from './support/probes.js';
import { RegistryService } from './support/registry-service.js';

/** Zombies count as dead: PID 1 of some containers never reaps them. */

describe('local GC executor on a real registry', () => {
  let service: RegistryService;
  let pusher: ImagePusher;
  let executor: GcExecutor;

  beforeAll(async () => {
    service = await RegistryService.create();
    pusher = new ImagePusher(service.url);
    executor = await createExecutor(service.localExecutor);
  });

  afterAll(async () => {
    await executor?.close();
    await pusher?.close();
    await service?.cleanup();
  });

  it('reports what it can do from the lifecycle commands', () => {
    expect(executor.type).toBe('local');
    expect(executor.capabilities).toEqual({ stop: true, readOnly: true, restart: true });
  });

  it('collects garbage: a dry run changes nothing, a stopped-registry run frees the deleted image', async () => {
    const kept = await pusher.pushImage('team/app', ['v2'], { layers: 1, layerSize: 64 * 1024 });
    const gone = await pusher.pushImage('team/app', ['v1'], { layers: 2, layerSize: 512 * 1024 });
    expect(
      await httpStatus(`${service.url}/v2/team/app/manifests/${gone.digest}`, { method: 'DELETE' }),
    ).toBe(202);
    const before = await storageBytes(executor);
    expect(before).toBeGreaterThan(1024 * 1024);

    const streamed: string[] = [];
    const dry = await executor.garbageCollect({
      dryRun: true,
      deleteUntagged: false,
      onOutput: (chunk) => streamed.push(chunk),
    });
    expect(dry.exitCode).toBe(0);
    expect(dry.outputTruncated).toBe(false);
    expect(streamed.join('')).toBe(dry.output);
    const plan = parseGcOutput(dry.output);
    expect(plan.errors).toEqual([]);
    expect(plan.blobsDeleted.sort()).toEqual(
      [gone.digest, gone.config.digest, ...gone.layers.map((l) => l.digest)].sort(),
    );
    expect(await storageBytes(executor)).toBe(before);

    await executor.stop();
    expect(await service.running()).toBe(false);
    expect(await httpStatus(`${service.url}/v2/`)).toBeUndefined();

    const real = await executor.garbageCollect({ dryRun: false, deleteUntagged: false });
    expect(real.exitCode).toBe(0);
    const done = parseGcOutput(real.output);
    expect(done.confirmed.blobs.sort()).toEqual(plan.blobsDeleted.sort());
    const after = await storageBytes(executor);
    expect(before - after).toBeGreaterThanOrEqual(1024 * 1024);

    await executor.start({ readOnly: false });
    expect(await httpStatus(`${service.url}/v2/`)).toBe(200);
    expect(
      await httpStatus(`${service.url}/v2/team/app/blobs/${gone.layers[0].digest}`, { method: 'HEAD' }),
    ).toBe(404);
    const manifest = await fetch(`${service.url}/v2/team/app/manifests/v2`, {
      headers: { accept: MANIFEST_ACCEPT },
    });
    expect(manifest.status).toBe(200);
    await manifest.arrayBuffer();
    expect((await pusher.pullBlob('team/app', kept.layers[0].digest)).length).toBe(kept.layers[0].size);
  });

  it('restarts the registry read-only and back', async () => {
    await executor.restart({ readOnly: true });
    expect(await service.isReadOnly()).toBe(true);
    await executor.restart({ readOnly: false });
    expect(await service.isReadOnly()).toBe(false);
    await executor.stop();
    await executor.start({ readOnly: true });
    expect(await service.isReadOnly()).toBe(true);
    await executor.restart({ readOnly: false });
  });

  it('measures 0 bytes for a storage folder that does not exist yet', async () => {
    const empty = await createExecutor({
      type: 'local',
      configPath: '/x',
      storagePath: join(tmpdir(), 'nope-registry-gw'),
    });
    expect(await storageBytes(empty)).toBe(0);
  });

  it('passes env, reports exit codes, and 127 for a missing binary', async () => {
    const withEnv = await createExecutor({
      type: 'local',
      configPath: '/x',
      storagePath: '/x',
      env: { FROM_CONFIG: 'a b' },
    });
    const r = await withEnv.exec(['sh', '-c', 'echo "$FROM_CONFIG/$FROM_CALL"; echo oops >&2; exit 3'], {
      env: { FROM_CALL: "it's" },
    });
    expect(r).toEqual({ exitCode: 3, output: expect.stringContaining("a b/it's\n"), outputTruncated: false });
    expect(r.output).toContain('oops\n');
    const missing = await executor.exec(['no-such-binary-registry-gw']);
    expect(missing.exitCode).toBe(127);
    const gc = await (
      await createExecutor({
        type: 'local',
        command: ['no-such-registry-binary'],
        configPath: '/x',
        storagePath: '/x',
      })
    ).garbageCollect({ dryRun: true, deleteUntagged: false });
    expect(gc.exitCode).toBe(127);
  });

  it('fails a lifecycle command that exits non-zero with EXECUTOR_COMMAND_FAILED', async () => {
    const broken = await createExecutor({
      type: 'local',
      configPath: '/x',
      storagePath: '/x',
      lifecycle: { stop: ['sh', '-c', 'echo unit not found >&2; exit 5'], start: ['true'] },
    });
    await expect(broken.stop()).rejects.toMatchObject({
      code: 'EXECUTOR_COMMAND_FAILED',
      details: { exitCode: 5, output: 'unit not found\n' },
    });
    await expect(broken.start({ readOnly: true })).rejects.toMatchObject({ code: 'FENCE_UNSUPPORTED' });
    const none = await createExecutor({ type: 'local', configPath: '/x', storagePath: '/x' });
    expect(none.capabilities).toEqual({ stop: false, readOnly: false, restart: false });
    await expect(none.restart({ readOnly: false })).rejects.toMatchObject({ code: 'FENCE_UNSUPPORTED' });
  });

  it('kills the process group when aborted', async () => {
    const controller = new AbortController();
    let out = '';
    const run = executor.exec(['sh', '-c', 'sleep 30 & echo "$$ $!"; wait'], {
      signal: controller.signal,
      onOutput: (c) => {
        out += c;
        if (out.includes('\n')) controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ code: 'EXECUTOR_ABORTED' });
    const [shell, sleeper] = out.trim().split(' ').map(Number);
    await new Promise((r) => setTimeout(r, 100));
    expect(alive(shell)).toBe(false);
    expect(alive(sleeper)).toBe(false);
    await expect(executor.exec(['true'], { signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'EXECUTOR_ABORTED',
    });
  });

  it('caps the output it keeps but streams all of it', async () => {
    let streamed = 0;
    const r = await executor.exec(['sh', '-c', "head -c 3000000 /dev/zero | tr '\\0' a"], {
      onOutput: (c) => (streamed += c.length),
    });
    expect(r.exitCode).toBe(0);
    expect(streamed).toBe(3_000_000);
    expect(r.outputTruncated).toBe(true);
    expect(r.output.length).toBeLessThan(1024 * 1024 + 200);
    expect(r.output).toMatch(/bytes of output omitted here/);
  });
});

describe('local GC executor with a storage folder of its own', () => {
  it('runs garbage-collect on a registry nothing was pushed to (2.8 fails: no repositories folder)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'registry-gw-empty-'));
    const service = await RegistryService.create({ storageDir: join(dir, 'storage'), start: false });
    try {
      const executor = await createExecutor({
        type: 'local',
        command: ['docker-registry'],
        configPath: service.configPath,
        storagePath: service.storagePath,
      });
      const r = await executor.garbageCollect({ dryRun: false, deleteUntagged: true });
      expect(r.exitCode).toBe(1);
      expect(parseGcOutput(r.output)).toMatchObject({ nothingStored: true, summarySeen: false });
    } finally {
      await service.cleanup();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
