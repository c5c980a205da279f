import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { createExecutor } from '../src/gc/executors/executor-factory.js';
import { PID_MARKER, pidWrapped, type GcExecutor } from '../src/gc/executors/gc-executor.js';
import { storageBytes } from './support/storage.js';
import { parseGcOutput } from '../src/gc/gc-output.js';
import { FakeDockerEngine, type FakeExecBehaviour } from './support/fake-docker-engine.js';
import { makeCertificates } from './support/tls.js';

// No Docker engine runs on these machines: the executor talks to a fake Engine API on a unix socket
// (test/support/fake-docker-engine.ts) that speaks the real protocol, hijacked multiplexed stream included.
const GC_OUTPUT = readFileSync(new URL('../src/gc/fixtures/gc-2.8-dry-run.txt', import.meta.url), 'utf8');

describe('docker GC executor against a fake Engine API', () => {
  let engine: FakeDockerEngine | undefined;
  let executor: GcExecutor | undefined;

  afterEach(async () => {
    await executor?.close();
    await engine?.stop();
    engine = undefined;
    executor = undefined;
  });

  async function setup(
    onExec: (argv: string[], env: string[]) => FakeExecBehaviour,
    config: { killOnAbort?: boolean; env?: Record<string, string>; container?: string } = {},
    containers?: Record<string, boolean>,
  ) {
    engine = await FakeDockerEngine.start({ onExec, containers });
    executor = await createExecutor({
      type: 'docker',
      socketPath: engine.socketPath,
      container: config.container ?? 'registry',
      killOnAbort: config.killOnAbort,
      env: config.env,
    });
    return { engine, executor };
  }

  it('runs garbage-collect with exec create, a hijacked start and exec inspect, streaming demultiplexed output', async () => {
    const lines = GC_OUTPUT.split(/(?<=\n)/);
    const { engine, executor } = await setup((argv) =>
      argv[1] === 'garbage-collect'
        ? {
            frames: [
              { stream: 1, data: lines.slice(0, 5).join('') },
              { stream: 2, data: 'time="2026-01-01T00:00:00Z" level=warn msg="note"\n' },
              { stream: 1, data: lines.slice(5).join('') },
            ],
            exitCode: 0,
          }
        : { exitCode: 99 },
    );
    const chunks: string[] = [];
    const result = await executor.garbageCollect({
      dryRun: true,
      deleteUntagged: false,
      onOutput: (c) => chunks.push(c),
    });
    expect(result.exitCode).toBe(0);
    expect(result.outputTruncated).toBe(false);
    expect(result.output).toBe(
      lines.slice(0, 5).join('') +
        'time="2026-01-01T00:00:00Z" level=warn msg="note"\n' +
        lines.slice(5).join(''),
    );
    expect(result.output).not.toContain(PID_MARKER);
    expect(chunks.join('')).toBe(result.output);
    expect(parseGcOutput(result.output)).toMatchObject({ blobsMarked: 13, blobsEligible: 4, errors: [] });

    const [create, start, ...inspects] = engine.requests;
    expect(create).toMatchObject({
      method: 'POST',
      url: '/containers/registry/exec',
      body: {
        Cmd: pidWrapped(['registry', 'garbage-collect', '--dry-run', '/etc/docker/registry/config.yml']),
        AttachStdin: false,
        AttachStdout: true,
        AttachStderr: true,
        Tty: false,
        Env: [],
      },
    });
    const execId = [...engine.execs.keys()][0];
    expect(start).toMatchObject({
      method: 'POST',
      url: `/exec/${execId}/start`,
      headers: { connection: 'Upgrade', upgrade: 'tcp', 'content-type': 'application/json' },
      body: { Detach: false, Tty: false },
    });
    expect(inspects.length).toBeGreaterThanOrEqual(1);
    expect(inspects.every((r) => r.method === 'GET' && r.url === `/exec/${execId}/json`)).toBe(true);
  });

  it('returns a failing exit code with the error output', async () => {
    const { executor } = await setup(() => ({
      frames: [{ stream: 2, data: 'failed to garbage collect: failed to mark: boom' }],
      exitCode: 1,
    }));
    const result = await executor.garbageCollect({ dryRun: false, deleteUntagged: true });
    expect(result.exitCode).toBe(1);
    expect(parseGcOutput(result.output).errors).toEqual(['failed to garbage collect: failed to mark: boom']);
  });

  it('runs argv as given without the PID wrapper, with config and call env', async () => {
    const { engine, executor } = await setup(
      (_argv, env) => ({ frames: [{ stream: 1, data: `${env.join(',')}\n` }], exitCode: 0 }),
      { killOnAbort: false, env: { A: '1' } },
    );
    const result = await executor.exec(['printenv'], { env: { B: "two 'words'" } });
    expect(result.output).toBe("A=1,B=two 'words'\n");
    expect(engine.requests[0].body).toMatchObject({ Cmd: ['printenv'], Env: ['A=1', "B=two 'words'"] });
  });

  it('reads the storage in the container: a du of each tree, a find for the rest', async () => {
    const { engine, executor } = await setup((argv) =>
      argv[0] === 'du'
        ? { frames: [{ stream: 1, data: `2048\t${argv[2]}\n` }], exitCode: 0 }
        : argv[0] === 'find'
          ? { frames: [{ stream: 1, data: '8 512\n8 512\n' }], exitCode: 0 }
          : { exitCode: 1 },
    );
    expect(executor.storagePath).toBe('/var/lib/registry');
    expect(await storageBytes(executor)).toBe(2 * 2048 * 1024 + 2 * 8 * 512);
    const commands = engine.requests
      .map((r) => (r.body as { Cmd?: string[] } | undefined)?.Cmd?.slice(4))
      .filter((c): c is string[] => !!c);
    expect(commands).toEqual(
      expect.arrayContaining([
        // Under `nice`: the registry in the container comes first.
        ['nice', '-n', '19', 'du', '-akH', '/var/lib/registry/docker/registry/v2/blobs'],
        ['nice', '-n', '19', 'du', '-akH', '/var/lib/registry/docker/registry/v2/repositories'],
        expect.arrayContaining(['nice', 'find', '/var/lib/registry/', '-prune', 'stat']),
      ]),
    );
  });

  it('stops, starts and restarts the container; read-only and the stop fence are not possible', async () => {
    const { engine, executor } = await setup(() => ({}));
    // stop() is there for a registry found down after a crash; a run cannot collect in a stopped container.
    expect(executor.capabilities).toEqual({ stop: false, readOnly: false, restart: true });
    await executor.stop();
    await executor.stop(); // 304: already stopped
    expect(engine.containers.get('registry')).toBe(false);
    await executor.start({ readOnly: false });
    await executor.start({ readOnly: false }); // 304
    await executor.restart({ readOnly: false });
    expect(engine.calls).toEqual([
      'POST /containers/registry/stop?t=10',
      'POST /containers/registry/stop?t=10',
      'POST /containers/registry/start',
      'POST /containers/registry/start',
      'POST /containers/registry/restart?t=10',
    ]);
    await expect(executor.start({ readOnly: true })).rejects.toMatchObject({ code: 'FENCE_UNSUPPORTED' });
    await expect(executor.restart({ readOnly: true })).rejects.toMatchObject({ code: 'FENCE_UNSUPPORTED' });
  });

  it('maps a missing container, a stopped container and a missing socket to error codes', async () => {
    const { executor } = await setup(() => ({}), { container: 'nope' });
    await expect(executor.exec(['true'])).rejects.toMatchObject({ code: 'EXECUTOR_TARGET_NOT_FOUND' });
    await expect(executor.stop()).rejects.toMatchObject({ code: 'EXECUTOR_TARGET_NOT_FOUND' });
    await engine!.stop();

    const stopped = await setup(() => ({}), {}, { registry: false });
    await expect(stopped.executor.exec(['true'])).rejects.toMatchObject({
      code: 'EXECUTOR_COMMAND_FAILED',
      message: expect.stringContaining('not running'),
    });

    const nowhere = await createExecutor({
      type: 'docker',
      socketPath: '/nonexistent/docker.sock',
      container: 'registry',
    });
    await expect(nowhere.exec(['true'])).rejects.toMatchObject({ code: 'EXECUTOR_UNREACHABLE' });
  });

  it('kills the command through a second exec when aborted', async () => {
    const { engine, executor } = await setup((argv) =>
      argv[0] === 'sleep'
        ? { frames: [{ stream: 1, data: 'sleeping\n' }], hangUntilKilled: true }
        : { exitCode: 0 },
    );
    const controller = new AbortController();
    const run = executor.exec(['sleep', '3600'], {
      signal: controller.signal,
      onOutput: (c) => c.includes('sleeping') && controller.abort(),
    });
    await expect(run).rejects.toMatchObject({ code: 'EXECUTOR_ABORTED', details: { output: 'sleeping\n' } });
    const [first, kill] = [...engine.execs.values()];
    expect(kill.cmd).toEqual(['kill', '-TERM', String(first.pid)]);
    expect(first).toMatchObject({ running: false, exitCode: 143 });
  });

  it('kills the command once its PID arrives when the abort came first', async () => {
    const { engine, executor } = await setup((argv) =>
      argv[0] === 'sleep'
        ? { frames: [{ stream: 1, data: 'sleeping\n' }], pidLineLast: true, hangUntilKilled: true }
        : { exitCode: 0 },
    );
    const controller = new AbortController();
    const run = executor.exec(['sleep', '3600'], {
      signal: controller.signal,
      onOutput: (c) => c.includes('sleeping') && controller.abort(),
    });
    await expect(run).rejects.toMatchObject({ code: 'EXECUTOR_ABORTED', details: { output: 'sleeping\n' } });
    const [first, kill] = [...engine.execs.values()];
    expect(kill.cmd).toEqual(['kill', '-TERM', String(first.pid)]);
  });

  it('waits for the command to end when the attach stream closes early', async () => {
    const { engine, executor } = await setup(() => ({
      frames: [{ stream: 1, data: 'marking...\n' }],
      dropStreamFor: 2_500,
      exitCode: 0,
    }));
    const result = await executor.garbageCollect({ dryRun: true, deleteUntagged: false });
    expect(result.exitCode).toBe(0);
    // It answered once the command had ended, not when the stream closed (the command ran on for 2.5 s).
    expect([...engine.execs.values()].map((e) => e.running)).toEqual([false]);
    expect(result.output).toMatch(/^marking\.\.\.\n\n\[registry-gateway: the output stream closed early/);
    expect(engine.calls.filter((c) => c.startsWith('GET /exec/')).length).toBeGreaterThan(1);
  });

  it('talks to an Engine over TCP too', async () => {
    engine = await FakeDockerEngine.start({
      tcp: true,
      onExec: () => ({ frames: [{ stream: 1, data: 'hello\n' }], exitCode: 0 }),
    });
    executor = await createExecutor({
      type: 'docker',
      host: '127.0.0.1',
      port: engine.port,
      container: 'registry',
    });
    expect(await executor.exec(['echo', 'hello'])).toEqual({
      exitCode: 0,
      output: 'hello\n',
      outputTruncated: false,
    });
  });

  it('talks to an Engine over TLS with the configured CA, and refuses one it cannot verify', async () => {
    const [certs, otherCa] = await Promise.all([makeCertificates(), makeCertificates()]);
    try {
      engine = await FakeDockerEngine.start({
        tcp: true,
        tls: { certPath: certs.certPath, keyPath: certs.keyPath },
        onExec: () => ({ frames: [{ stream: 1, data: 'over tls\n' }], exitCode: 0 }),
      });
      const base = { type: 'docker' as const, host: '127.0.0.1', port: engine.port, container: 'registry' };
      executor = await createExecutor({ ...base, tls: { ca: certs.caPem } });
      expect((await executor.exec(['true'])).output).toBe('over tls\n');
      const untrusted = await createExecutor({ ...base, tls: { ca: otherCa.caPem } });
      await expect(untrusted.exec(['true'])).rejects.toMatchObject({ code: 'EXECUTOR_AUTH_FAILED' });
    } finally {
      await certs.cleanup();
      await otherCa.cleanup();
    }
  });
});
