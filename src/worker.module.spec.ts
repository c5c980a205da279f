import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/** A module of this folder, by path, for a child process. */
const here = (name: string) => JSON.stringify(fileURLToPath(new URL(name, import.meta.url)));

/**
 * Runs `steps` (statements awaiting imports) in a fresh Node process and returns, after each
 * `report(name)`, which of `packages` it has resolved so far.
 */
async function packagesLoaded(packages: string[], steps: string): Promise<Record<string, string[]>> {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = new Set();
    registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.add(r.url); return r; } });
    const packages = ${JSON.stringify(packages)};
    const reports = {};
    const report = (name) => (reports[name] = packages.filter((p) => [...seen].some((u) => u.includes('/node_modules/' + p + '/'))));
    await import('reflect-metadata');
    ${steps}
    console.log(JSON.stringify(reports));
  `;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', script],
    { timeout: 60_000 },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, string[]>;
}

describe('what a process loads', () => {
  it("the worker loads no HTTP, GraphQL or OpenAPI server; neither process loads an executor type's client library until a registry uses that type", async () => {
    const servers = [
      '@nestjs/apollo',
      '@apollo/server',
      '@nestjs/platform-fastify',
      'fastify',
      '@bull-board/api',
    ];
    const clients = ['@kubernetes/client-node', 'dockerode', 'ssh2'];
    const loaded = await packagesLoaded(
      [...servers, ...clients],
      `
      await import(${here('./worker.module.ts')});
      report('worker');
      await import(${here('./app.module.ts')});
      report('both');
      const { createExecutor } = await import(${here('./gc/executors/executor-factory.ts')});
      await (await createExecutor({ type: 'local', configPath: '/c', storagePath: '/s' })).close();
      report('local');
      await (await createExecutor({ type: 'docker', container: 'r' })).close();
      report('docker');
      `,
    );
    expect(loaded.worker).toEqual([]);
    // The API's servers, once the API's module is loaded: what is recorded is what was loaded.
    expect(loaded.both).toEqual(
      expect.arrayContaining(['@nestjs/apollo', '@nestjs/platform-fastify', 'fastify']),
    );
    expect(loaded.local.filter((p) => clients.includes(p))).toEqual([]);
    // dockerode brings docker-modem, which speaks ssh2 for ssh:// engines.
    expect(loaded.docker).toContain('dockerode');
    expect(loaded.docker).not.toContain('@kubernetes/client-node');
  }, 90_000);
});
