import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { LocalGcExecutor } from './local-executor.js';
import { Spawner } from './spawner.js';

const executor = new LocalGcExecutor({
  type: 'local',
  command: ['true'],
  configPath: '/etc/registry/config.yml',
  storagePath: '/var/lib/registry',
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(check: () => boolean, what: string) {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`still not ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('local commands through the spawner process', () => {
  it('runs commands side by side with their output, exit codes and missing commands', async () => {
    const results = await Promise.all(
      [1, 2, 3, 4, 5].map((n) => executor.exec(['sh', '-c', `echo out-${n}; echo err-${n} >&2; exit ${n}`])),
    );
    results.forEach((r, i) => {
      expect(r.exitCode).toBe(i + 1);
      expect(r.output).toContain(`out-${i + 1}\n`);
      expect(r.output).toContain(`err-${i + 1}\n`);
    });
    const missing = await executor.exec(['no-such-command-anywhere']);
    expect(missing).toMatchObject({ exitCode: 127, output: 'no-such-command-anywhere: command not found\n' });
    expect(Spawner.get().pid).toBeGreaterThan(0);
    expect(Spawner.get().pid).not.toBe(process.pid);
  });

  it('streams a large output whole, in order', async () => {
    const chunks: string[] = [];
    const r = await executor.exec(['seq', '1', '200000'], { onOutput: (c) => chunks.push(c) });
    expect(r.exitCode).toBe(0);
    const lines = chunks.join('').trimEnd().split('\n');
    expect(lines).toHaveLength(200_000);
    expect(lines[0]).toBe('1');
    expect(lines[199_999]).toBe('200000');
    expect(r.outputTruncated).toBe(true); // the result is capped; onOutput saw everything
  });

  it("reads the collector's output through files, whole and per stream, and closes them", async () => {
    const helperFds = () => readdirSync(`/proc/${Spawner.get().pid}/fd`).length;
    // The collector's argv is the configured command followed by `garbage-collect <config>`.
    const collector = new LocalGcExecutor({
      type: 'local',
      command: [
        'sh',
        '-c',
        'readlink /proc/self/fd/1; i=0; while [ $i -lt 3000 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done; printf last',
      ],
      configPath: '/etc/registry/config.yml',
      storagePath: '/var/lib/registry',
    });
    await executor.exec(['true']);
    const fdsBefore = helperFds();
    const seen = { stdout: '', stderr: '' };
    const r = await collector.garbageCollect({
      dryRun: false,
      deleteUntagged: false,
      onOutput: (chunk, stream) => (seen[stream] += chunk),
    });
    expect(r.exitCode).toBe(0);
    const out = seen.stdout.split('\n');
    expect(out[0]).toMatch(/^\/.*registry-gateway-.*-out-.* \(deleted\)$/); // a file, not a pipe
    expect(out.slice(1)).toEqual([...Array.from({ length: 3000 }, (_, i) => `out ${i}`), 'last']);
    expect(seen.stderr).toBe(Array.from({ length: 3000 }, (_, i) => `err ${i}\n`).join(''));
    expect(helperFds()).toBe(fdsBefore);
    // Anything else goes through pipes.
    const other = await executor.exec(['readlink', '/proc/self/fd/1']);
    expect(other.output).not.toMatch(/registry-gateway/);
  });

  it('reads an output larger than what waits for the worker through files, in order', async () => {
    const chunks: string[] = [];
    const r = await executor.exec(['seq', '1', '300000'], {
      onOutput: (c) => chunks.push(c),
      manyLines: true,
    });
    expect(r.exitCode).toBe(0);
    const lines = chunks.join('').trimEnd().split('\n');
    expect(lines).toHaveLength(300_000);
    expect(lines[0]).toBe('1');
    expect(lines[299_999]).toBe('300000');
    const missing = await executor.exec(['no-such-command-anywhere'], { manyLines: true });
    expect(missing).toMatchObject({ exitCode: 127, output: 'no-such-command-anywhere: command not found\n' });
  });

  it('kills the whole process group on abort', async () => {
    const abort = new AbortController();
    let pids: number[] = [];
    const running = executor.exec(['sh', '-c', 'sleep 300 & echo "$$ $!"; wait'], {
      signal: abort.signal,
      onOutput: (c) => (pids = c.trim().split(' ').map(Number)),
    });
    await until(() => pids.length === 2, 'started');
    expect(pids.every(alive)).toBe(true);
    abort.abort();
    await expect(running).rejects.toMatchObject({ code: 'EXECUTOR_ABORTED' });
    await until(() => !pids.some(alive), 'killed');
  });

  it('fails and kills what a dead spawner was running, and starts a new one for the next command', async () => {
    let pids: number[] = [];
    const running = executor.exec(['sh', '-c', 'sleep 300 & echo "$$ $!"; wait'], {
      onOutput: (c) => (pids = c.trim().split(' ').map(Number)),
    });
    await until(() => pids.length === 2, 'started');
    const helper = Spawner.get().pid!;
    process.kill(helper, 'SIGKILL');
    await expect(running).rejects.toMatchObject({ code: 'EXECUTOR_COMMAND_FAILED' });
    // Its own process group outlives the helper: the worker kills it.
    await until(() => !pids.some(alive), 'killed by the worker');
    const next = await executor.exec(['echo', 'again']);
    expect(next).toMatchObject({ exitCode: 0, output: 'again\n' });
    expect(Spawner.get().pid).not.toBe(helper);
  });

  it('keeps its commands when a signal reaches the whole process group: they are the worker’s to stop', async () => {
    let pid = 0;
    const abort = new AbortController();
    const running = executor.exec(['sh', '-c', 'echo $$; exec sleep 300'], {
      signal: abort.signal,
      onOutput: (c) => (pid = Number(c.trim())),
    });
    await until(() => pid > 0, 'started');
    const helper = Spawner.get().pid!;
    // What a Ctrl-C or a supervisor's group signal does to the helper (the test's own process is spared).
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.kill(helper, signal);
    await new Promise((r) => setTimeout(r, 200));
    expect(alive(helper)).toBe(true);
    expect(alive(pid)).toBe(true);
    abort.abort();
    await expect(running).rejects.toMatchObject({ code: 'EXECUTOR_ABORTED' });
    await until(() => !alive(pid), 'killed on abort');
  });

  it('kills what it started when the worker process dies', async () => {
    // A process that starts a long command through its spawner, prints the command's pid, then is killed.
    const spawnerModule = fileURLToPath(new URL('./local-executor.ts', import.meta.url));
    const script = `
      const { LocalGcExecutor } = await import(${JSON.stringify(spawnerModule)});
      const ex = new LocalGcExecutor({ type: 'local', configPath: '/c', storagePath: '/s' });
      await ex.exec(['sh', '-c', 'echo "pid $$"; exec sleep 300'], { onOutput: (c) => process.stdout.write(c) });
    `;
    const worker = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    worker.stdout.on('data', (c: Buffer) => (out += c.toString()));
    await until(() => /pid \d+/.test(out), 'started');
    const pid = Number(/pid (\d+)/.exec(out)![1]);
    expect(alive(pid)).toBe(true);
    worker.kill('SIGKILL');
    await until(() => !alive(pid), 'killed with its worker');
  });
});
