import { execFileSync } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createExecutor } from '../src/gc/executors/executor-factory.js';
import {
  KILL_GRACE_MS,
  type GcExecutor,
  type GcExecutorSecrets,
  type SshExecutorConfig,
} from '../src/gc/executors/gc-executor.js';
import { parseGcOutput } from '../src/gc/gc-output.js';
import { storageBytes } from './support/storage.js';
import { ImagePusher, MANIFEST_ACCEPT } from './support/image-pusher.js';
import { alive, httpStatus } from './support/probes.js';
import { RegistryService } from './support/registry-service.js';
import { SshServer } from './support/sshd.js';

describe('ssh GC executor against a real sshd and a real registry', () => {
  let sshd: SshServer;
  let service: RegistryService;
  let pusher: ImagePusher;
  let executor: GcExecutor;
  const opened: GcExecutor[] = [];

  const make = async (
    overrides: Partial<SshExecutorConfig> = {},
    secrets?: GcExecutorSecrets,
  ): Promise<GcExecutor> => {
    const e = await createExecutor(
      {
        type: 'ssh',
        host: sshd.host,
        port: sshd.port,
        username: sshd.username,
        hostKeySha256: sshd.hostKey.fingerprint,
        command: ['docker-registry'],
        configPath: service.configPath,
        storagePath: service.storagePath,
        lifecycle: service.lifecycle,
        connectTimeoutMs: 5_000,
        ...overrides,
      },
      secrets ?? { privateKey: sshd.clientKey.privateKey },
    );
    opened.push(e);
    return e;
  };

  beforeAll(async () => {
    [sshd, service] = await Promise.all([SshServer.start(), RegistryService.create()]);
    pusher = new ImagePusher(service.url);
    executor = await make();
  });

  afterAll(async () => {
    await Promise.all(opened.map((e) => e.close()));
    await pusher?.close();
    await service?.cleanup();
    await sshd?.stop();
  });

  it('collects garbage on the registry host, stopping and starting the registry there', async () => {
    expect(executor.capabilities).toEqual({ stop: true, readOnly: true, restart: true });
    const kept = await pusher.pushImage('ssh/app', ['v2'], { layerSize: 32 * 1024 });
    const gone = await pusher.pushImage('ssh/app', ['v1'], { layers: 2, layerSize: 512 * 1024 });
    expect(await httpStatus(`${service.url}/v2/ssh/app/manifests/${gone.digest}`, { method: 'DELETE' })).toBe(
      202,
    );
    const before = await storageBytes(executor);
    const du =
      Number(execFileSync('du', ['-sk', service.storagePath], { encoding: 'utf8' }).split('\t')[0]) * 1024;
    expect(before).toBe(du);

    const dry = await executor.garbageCollect({ dryRun: true, deleteUntagged: false });
    expect(dry.exitCode).toBe(0);
    const plan = parseGcOutput(dry.output);
    expect(plan.blobsDeleted.sort()).toEqual(
      [gone.digest, gone.config.digest, ...gone.layers.map((l) => l.digest)].sort(),
    );
    expect(dry.output).not.toContain('__registry_gateway_pid__');

    await executor.stop();
    expect(await service.running()).toBe(false);
    const real = await executor.garbageCollect({ dryRun: false, deleteUntagged: false });
    expect(real.exitCode).toBe(0);
    expect(parseGcOutput(real.output).confirmed.blobs.sort()).toEqual(plan.blobsDeleted.sort());
    expect(before - (await storageBytes(executor))).toBeGreaterThanOrEqual(1024 * 1024);
    await executor.start({ readOnly: true });
    expect(await service.isReadOnly()).toBe(true);
    await executor.restart({ readOnly: false });
    expect(await service.isReadOnly()).toBe(false);

    expect(
      await httpStatus(`${service.url}/v2/ssh/app/blobs/${gone.layers[0].digest}`, { method: 'HEAD' }),
    ).toBe(404);
    expect(
      await httpStatus(`${service.url}/v2/ssh/app/manifests/v2`, {
        method: 'HEAD',
        headers: { accept: MANIFEST_ACCEPT },
      }),
    ).toBe(200);
    expect((await pusher.pullBlob('ssh/app', kept.layers[0].digest)).length).toBe(kept.layers[0].size);
  });

  it('quotes argv for the remote shell and passes env', async () => {
    const withEnv = await make({ env: { FROM_CONFIG: 'x y' } });
    const r = await withEnv.exec(['printf', '%s|%s|%s|%s\n', "it's $HOME", 'a;b `id`', '$FROM_CONFIG'], {
      env: { QUOTED: "o'clock" },
    });
    expect(r).toEqual({ exitCode: 0, output: "it's $HOME|a;b `id`|$FROM_CONFIG|\n", outputTruncated: false });
    const env = await withEnv.exec(['sh', '-c', 'echo "$FROM_CONFIG/$QUOTED"; exit 7'], {
      env: { QUOTED: "o'clock" },
    });
    expect(env).toMatchObject({ exitCode: 7, output: "x y/o'clock\n" });
    expect((await executor.exec(['no-such-command-registry-gw'])).exitCode).toBe(127);
  });

  it('logs in with a passphrase-protected key and reconnects after close()', async () => {
    const e = await make(
      {},
      { privateKey: sshd.passphraseKey.privateKey, passphrase: sshd.passphraseKey.passphrase },
    );
    expect((await e.exec(['true'])).exitCode).toBe(0);
    await e.close();
    expect((await e.exec(['echo', 'again'])).output).toBe('again\n');
  });

  it('refuses a host whose key does not match the pinned fingerprint', async () => {
    const e = await make({ hostKeySha256: sshd.otherHostKey.fingerprint });
    await expect(e.exec(['true'])).rejects.toMatchObject({
      code: 'EXECUTOR_HOST_KEY_MISMATCH',
      details: { expected: sshd.otherHostKey.fingerprint, presented: sshd.hostKey.fingerprint },
    });
    const insecure = await make({ hostKeySha256: undefined, insecureIgnoreHostKey: true });
    expect((await insecure.exec(['true'])).exitCode).toBe(0);
  });

  it('reports a key the server does not accept, or a wrong passphrase, as EXECUTOR_AUTH_FAILED', async () => {
    await expect(
      (await make({}, { privateKey: sshd.strangerKey.privateKey })).exec(['true']),
    ).rejects.toMatchObject({
      code: 'EXECUTOR_AUTH_FAILED',
    });
    await expect(
      (await make({}, { privateKey: sshd.passphraseKey.privateKey, passphrase: 'wrong' })).exec(['true']),
    ).rejects.toMatchObject({ code: 'EXECUTOR_AUTH_FAILED' });
  });

  it('reports a closed port and a silent server as EXECUTOR_UNREACHABLE', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    await expect((await make({ port: closedPort })).exec(['true'])).rejects.toMatchObject({
      code: 'EXECUTOR_UNREACHABLE',
      message: expect.stringContaining('ECONNREFUSED'),
    });

    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      await expect(
        (await make({ port: (silent.address() as { port: number }).port, connectTimeoutMs: 1_000 })).exec([
          'true',
        ]),
      ).rejects.toMatchObject({
        code: 'EXECUTOR_UNREACHABLE',
        message: expect.stringContaining('timed out'),
      });
    } finally {
      sockets.forEach((s) => s.destroy());
      await new Promise((r) => silent.close(r));
    }
  });

  it('kills the remote command on a new connection when the connection drops mid-command', async () => {
    const e = await make();
    let out = '';
    let dropped = false;
    const run = e.exec(['sh', '-c', 'echo $$; exec sleep 30'], {
      onOutput: (c) => {
        out += c;
        if (!dropped && out.includes('\n')) {
          dropped = true;
          // what a network failure does: the TCP connection is gone, the remote side is left running
          (e as unknown as { client: { _sock: Socket } }).client._sock.destroy();
        }
      },
    });
    await expect(run).rejects.toMatchObject({
      code: 'EXECUTOR_UNREACHABLE',
      details: { killAttempted: true },
    });
    const pid = Number(out.trim());
    const deadline = Date.now() + 3_000;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(alive(pid)).toBe(false);
  });

  it('kills the remote command and its children when aborted', async () => {
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
    const deadline = Date.now() + 3_000;
    while ((alive(shell) || alive(sleeper)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(alive(shell)).toBe(false);
    expect(alive(sleeper)).toBe(false);
    // the connection is still good for the next command
    expect((await executor.exec(['echo', 'ok'])).output).toBe('ok\n');
  });

  it('sends no KILL once an aborted command ended on TERM: no connection is opened after close()', async () => {
    const e = await make();
    const controller = new AbortController();
    let out = '';
    const run = e.exec(['sh', '-c', 'trap "exit 0" TERM; echo ready; while :; do sleep 0.1; done'], {
      signal: controller.signal,
      onOutput: (c) => {
        out += c;
        if (out.includes('ready\n')) controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ code: 'EXECUTOR_ABORTED' });
    await e.close();
    // Past the grace after which a KILL would go out (on a new connection, to a PID that may be reused).
    await new Promise((r) => setTimeout(r, KILL_GRACE_MS + 1_000));
    expect((e as unknown as { client?: unknown }).client).toBeUndefined();
  });
});
