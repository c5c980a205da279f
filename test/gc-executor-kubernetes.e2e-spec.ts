import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { createExecutor } from '../src/gc/executors/executor-factory.js';
import {
  PID_MARKER,
  pidWrapped,
  type GcExecutor,
  type KubernetesExecutorConfig,
} from '../src/gc/executors/gc-executor.js';
import { storageBytes } from './support/storage.js';
import { parseGcOutput } from '../src/gc/gc-output.js';
import {
  FAKE_KUBE_TOKEN,
  FakeKubeApi,
  type FakeKubeExecBehaviour,
  type FakePodSpec,
} from './support/fake-kube-api.js';

// No cluster runs on these machines: @kubernetes/client-node's own Exec and CoreV1Api talk to a fake
// API server (test/support/fake-kube-api.ts) speaking v4.channel.k8s.io over a real websocket.
const GC_OUTPUT = readFileSync(
  new URL('../src/gc/fixtures/gc-3-delete-untagged.txt', import.meta.url),
  'utf8',
);
const LABELS = { app: 'registry' };

describe('kubernetes GC executor against a fake API server', () => {
  let api: FakeKubeApi | undefined;
  let executor: GcExecutor | undefined;

  afterEach(async () => {
    await executor?.close();
    await api?.stop();
    api = undefined;
    executor = undefined;
  });

  async function setup(
    pods: FakePodSpec[],
    onExec: (argv: string[], pod: string, container: string) => FakeKubeExecBehaviour,
    config: Partial<KubernetesExecutorConfig> = { labelSelector: 'app=registry' },
  ) {
    api = await FakeKubeApi.start({ pods, onExec });
    executor = await createExecutor(
      { type: 'kubernetes', namespace: api.namespace, ...config },
      { kubeconfig: api.kubeconfig() },
    );
    return { api, executor };
  }

  it('runs garbage-collect in a Running pod picked by label, with output from channels 1 and 2', async () => {
    const lines = GC_OUTPUT.split(/(?<=\n)/);
    const { api, executor } = await setup(
      [
        { name: 'registry-old', labels: LABELS, phase: 'Succeeded' },
        { name: 'registry-7d9f-abcde', labels: LABELS },
        { name: 'other-1', labels: { app: 'other' } },
      ],
      (argv) =>
        argv[1] === 'garbage-collect'
          ? { stdout: lines, stderr: ['time="2026-01-01T00:00:00Z" level=info msg="sweep stage complete"\n'] }
          : { exitCode: 2 },
    );
    const chunks: string[] = [];
    const result = await executor.garbageCollect({
      dryRun: false,
      deleteUntagged: true,
      onOutput: (c) => chunks.push(c),
    });
    expect(result.exitCode).toBe(0);
    expect(result.output).toBe(
      `${GC_OUTPUT}time="2026-01-01T00:00:00Z" level=info msg="sweep stage complete"\n`,
    );
    expect(result.output).not.toContain(PID_MARKER);
    expect(chunks.join('')).toBe(result.output);
    expect(parseGcOutput(result.output)).toMatchObject({ version: '3', manifestsEligible: 1 });

    const exec = api.execs[0];
    expect(exec).toMatchObject({ pod: 'registry-7d9f-abcde', container: 'registry' });
    expect(exec.command).toEqual(
      pidWrapped(['registry', 'garbage-collect', '--delete-untagged', '/etc/docker/registry/config.yml']),
    );
    const ws = api.requests.find((r) => r.method.includes('websocket'))!;
    expect(ws.url).toMatch(/^\/api\/v1\/namespaces\/registry\/pods\/registry-7d9f-abcde\/exec\?/);
    expect(new URL(ws.url, 'http://x').searchParams.get('stdout')).toBe('true');
    expect(new URL(ws.url, 'http://x').searchParams.get('tty')).toBe('false');
    expect(ws.protocol).toContain('v4.channel.k8s.io');
    expect(api.requests.every((r) => r.authorization === `Bearer ${FAKE_KUBE_TOKEN}`)).toBe(true);
  });

  it('reads the exit code from a NonZeroExitCode status, and fails when the command never ran', async () => {
    const { executor } = await setup([{ name: 'registry-0', labels: LABELS }], (argv) =>
      argv[0] === 'registry'
        ? { stderr: ['failed to garbage collect: failed to mark: boom'], exitCode: 1 }
        : argv[0] === 'du'
          ? { stdout: [`512\t${argv[2]}\n`] }
          : argv[0] === 'find'
            ? { stdout: ['8 512\n'] }
            : {
                failure: {
                  reason: 'InternalError',
                  message: 'exec: "nope": executable file not found in $PATH',
                },
              },
    );
    const gc = await executor.garbageCollect({ dryRun: true, deleteUntagged: false });
    expect(gc.exitCode).toBe(1);
    expect(parseGcOutput(gc.output).errors).toEqual(['failed to garbage collect: failed to mark: boom']);
    // The storage as a run reads it: a du of each tree and a find for the rest, in the pod.
    expect(await storageBytes(executor)).toBe(2 * 512 * 1024 + 8 * 512);
    await expect(executor.exec(['nope'])).rejects.toMatchObject({
      code: 'EXECUTOR_COMMAND_FAILED',
      message: expect.stringContaining('executable file not found'),
    });
  });

  it('uses a fixed pod and container, passes env with `env`, and can run without the PID wrapper', async () => {
    const { api, executor } = await setup(
      [{ name: 'registry-0', containers: ['registry', 'sidecar'] }],
      () => ({ stdout: ['ok\n'] }),
      { pod: 'registry-0', container: 'registry', killOnAbort: false, env: { A: '1' } },
    );
    expect(executor.capabilities).toEqual({ stop: false, readOnly: false, restart: false });
    expect((await executor.exec(['true'], { env: { B: '2' } })).output).toBe('ok\n');
    expect(api.execs[0].command).toEqual(['env', 'A=1', 'B=2', 'true']);
    await expect(executor.restart({ readOnly: false })).rejects.toMatchObject({ code: 'FENCE_UNSUPPORTED' });
    await expect(executor.stop()).rejects.toMatchObject({ code: 'FENCE_UNSUPPORTED' });
  });

  it('needs to know the container of a pod with several', async () => {
    const { executor } = await setup(
      [{ name: 'registry-0', labels: LABELS, containers: ['a', 'b'] }],
      () => ({}),
    );
    await expect(executor.exec(['true'])).rejects.toMatchObject({ code: 'EXECUTOR_CONFIG_INVALID' });
  });

  it('restarts by deleting the pods and waiting for as many new Ready ones', async () => {
    const { api, executor } = await setup(
      [
        { name: 'registry-aaaaa', labels: LABELS },
        { name: 'registry-bbbbb', labels: LABELS },
      ],
      () => ({}),
    );
    expect(executor.capabilities).toEqual({ stop: false, readOnly: false, restart: true });
    const oldUids = [...api.pods.values()].map((p) => p.metadata.uid);
    await executor.restart({ readOnly: false });
    expect(api.requests.filter((r) => r.method === 'DELETE').map((r) => r.url)).toEqual([
      '/api/v1/namespaces/registry/pods/registry-aaaaa',
      '/api/v1/namespaces/registry/pods/registry-bbbbb',
    ]);
    const ready = [...api.pods.values()].filter(
      (p) => !oldUids.includes(p.metadata.uid) && p.status.conditions[0].status === 'True',
    );
    expect(ready).toHaveLength(2);
    await expect(executor.restart({ readOnly: true })).rejects.toMatchObject({ code: 'FENCE_UNSUPPORTED' });
  });

  it('maps missing pods, a refused token and an unreachable API to error codes', async () => {
    const { api } = await setup([{ name: 'registry-0', labels: { app: 'other' } }], () => ({}));
    await expect(executor!.exec(['true'])).rejects.toMatchObject({ code: 'EXECUTOR_TARGET_NOT_FOUND' });
    const fixed = await createExecutor(
      { type: 'kubernetes', namespace: api.namespace, pod: 'nope' },
      { kubeconfig: api.kubeconfig() },
    );
    await expect(fixed.exec(['true'])).rejects.toMatchObject({ code: 'EXECUTOR_TARGET_NOT_FOUND' });
    const badToken = await createExecutor(
      { type: 'kubernetes', namespace: api.namespace, labelSelector: 'app=other' },
      { kubeconfig: api.kubeconfig('wrong') },
    );
    await expect(badToken.exec(['true'])).rejects.toMatchObject({ code: 'EXECUTOR_AUTH_FAILED' });
    const port = api.port;
    await api.stop();
    const nowhere = await createExecutor(
      { type: 'kubernetes', namespace: 'registry', labelSelector: 'app=registry' },
      { kubeconfig: api.kubeconfig().replace(String(port), '1') },
    );
    await expect(nowhere.exec(['true'])).rejects.toMatchObject({ code: 'EXECUTOR_UNREACHABLE' });
    // afterEach stops it again: make that a no-op
    api.stop = async () => undefined;
  });

  it('works when the API server picks v5.channel.k8s.io (same framing) and leaves process.stdout alone', async () => {
    api = await FakeKubeApi.start({
      pods: [{ name: 'registry-0', labels: LABELS }],
      onExec: () => ({ stdout: ['five\n'], exitCode: 4 }),
      protocol: 'v5.channel.k8s.io',
    });
    executor = await createExecutor(
      { type: 'kubernetes', namespace: api.namespace, labelSelector: 'app=registry' },
      { kubeconfig: api.kubeconfig() },
    );
    expect(await executor.exec(['x'])).toEqual({ exitCode: 4, output: 'five\n', outputTruncated: false });
    expect(api.requests.find((r) => r.method.includes('websocket'))?.protocol).toMatch(
      /^v5\.channel\.k8s\.io/,
    );
    expect(process.stdout.writableEnded).toBe(false);
  });

  it('kills the command when the exec connection drops before its status', async () => {
    const { api, executor } = await setup([{ name: 'registry-0', labels: LABELS }], (argv) =>
      argv[0] === 'registry' ? { stdout: ['marking...\n'], dropConnection: true } : {},
    );
    await expect(executor.garbageCollect({ dryRun: false, deleteUntagged: false })).rejects.toMatchObject({
      code: 'EXECUTOR_UNREACHABLE',
      details: { output: 'marking...\n', killAttempted: true },
    });
    const [gc, kill] = api.execs;
    expect(kill.command).toEqual(['kill', '-KILL', String(gc.pid)]);
  });

  it('kills the command through a second exec when aborted', async () => {
    const { api, executor } = await setup([{ name: 'registry-0', labels: LABELS }], (argv) =>
      argv[0] === 'sleep' ? { stdout: ['sleeping\n'], hangUntilKilled: true } : {},
    );
    const controller = new AbortController();
    const run = executor.exec(['sleep', '3600'], {
      signal: controller.signal,
      onOutput: (c) => c.includes('sleeping') && controller.abort(),
    });
    await expect(run).rejects.toMatchObject({ code: 'EXECUTOR_ABORTED', details: { output: 'sleeping\n' } });
    const [first, kill] = api.execs;
    expect(kill.command).toEqual(['kill', '-TERM', String(first.pid)]);
    expect(first.done).toBe(true);
  });
});
