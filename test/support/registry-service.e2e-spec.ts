import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_REDIS_URL } from './environment.js';
import { gone, httpStatus } from './probes.js';
import { RegistryService } from './registry-service.js';

const SERVICE_MODULE = fileURLToPath(new URL('./registry-service.ts', import.meta.url));

/** Dead or a zombie (PID 1 here may never reap orphans). */

describe('RegistryService', () => {
  let service: RegistryService;

  beforeAll(async () => {
    service = await RegistryService.create();
  });

  afterAll(async () => {
    await service?.cleanup();
  });

  it('runs a registry that its script stops, starts and restarts read-only', async () => {
    expect(await httpStatus(`${service.url}/v2/`)).toBe(200);
    expect(await service.isReadOnly()).toBe(false);
    expect(service.lifecycle.stop).toEqual(['bash', service.scriptPath, 'stop']);

    await service.restart(true);
    expect(await service.isReadOnly()).toBe(true);
    const pid = await service.pid();
    expect(pid).toBeGreaterThan(0);

    await service.stop();
    expect(await service.running()).toBe(false);
    expect(await gone(pid!)).toBe(true);
    expect(await httpStatus(`${service.url}/v2/`)).toBeUndefined();

    await service.start();
    await service.start(); // idempotent
    expect(await service.isReadOnly()).toBe(false);
    const config = await readFile(service.configPath, 'utf8');
    expect(config).toContain(`rootdirectory: ${service.storagePath}`);
    expect(config).toContain('blobdescriptor: inmemory');
  });

  it('takes a port, a redis cache and a storage folder of the caller', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'registry-gw-svc-'));
    const redis = new URL(TEST_REDIS_URL);
    const other = await RegistryService.create({
      cache: 'redis',
      redis: { addr: `${redis.hostname}:${redis.port || 6379}`, db: 3 },
      storageDir: join(dir, 'storage'),
      start: 'readonly',
    });
    try {
      expect(await other.isReadOnly()).toBe(true);
      expect(await readFile(other.configPath, 'utf8')).toMatch(/blobdescriptor: redis[\s\S]*db: 3/);
      await expect(RegistryService.create({ port: other.port })).rejects.toThrow(/port .* is taken/);
    } finally {
      await other.cleanup();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['is killed with SIGKILL', 'kill'],
    ['exits without cleanup()', 'exit'],
  ])('leaves no registry behind when the test process %s', async (_name, how) => {
    const dir = await mkdtemp(join(tmpdir(), 'registry-gw-orphan-'));
    const script = join(dir, 'child.mts');
    await writeFile(
      script,
      `import { RegistryService } from ${JSON.stringify(SERVICE_MODULE)};
const s = await RegistryService.create();
await s.restart(false); // a PID the parent did not start directly
console.log(JSON.stringify({ pid: await s.pid(), url: s.url, workDir: s.workDir }));
// Exit (or be killed) only once the parent has seen the registry serve, so the probe below never
// races the child's own exit.
${how === 'exit' ? "process.stdin.once('data', () => process.exit(0));" : 'setInterval(() => undefined, 1000);'}
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    try {
      const info = await new Promise<{ pid: number; url: string; workDir: string }>((resolve, reject) => {
        let out = '';
        child.stdout.setEncoding('utf8').on('data', (c: string) => {
          out += c;
          const line = out.split('\n').find((l) => l.startsWith('{'));
          if (line) resolve(JSON.parse(line));
        });
        child.on('exit', (code) =>
          out.includes('{') ? undefined : reject(new Error(`child exited ${code}`)),
        );
      });
      expect(await httpStatus(`${info.url}/v2/`)).toBe(200);
      if (how === 'kill') child.kill('SIGKILL');
      else child.stdin.write('exit\n');
      // The process is what must not outlive the test; its port may already serve another suite's server.
      expect(await gone(info.pid)).toBe(true);
      await rm(info.workDir, { recursive: true, force: true });
    } finally {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
