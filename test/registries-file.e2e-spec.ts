import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistriesFileSync } from '../src/registries/registries-file.service.js';
import { adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';
import { RegistryProcess } from './support/registry-process.js';

describe('registries declared in a YAML file', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let dir: string;
  let file: string;
  let a: RegistryProcess;
  let b: RegistryProcess;

  beforeAll(async () => {
    env = await TestEnvironment.create('regfile');
    [a, b] = await Promise.all([
      RegistryProcess.start(),
      RegistryProcess.start({ basicAuth: { username: 'u', password: 'from-file' } }),
    ]);
    dir = await mkdtemp(join(tmpdir(), 'rg-file-'));
    file = join(dir, 'registries.yml');
    await writeFile(join(dir, 'password'), 'from-file\n');
    await writeFile(
      file,
      `registries:
  - name: alpha
    url: ${a.url}
    description: declared
    tls: { insecure: true }
  - name: beta
    url: ${b.url}
    auth: { type: basic, username: u, passwordFile: ${join(dir, 'password')} }
`,
    );
    // Polling off: the test drives syncs itself, so nothing races it.
    gw = await startApi(env, { REGISTRIES_FILE: file, REGISTRIES_FILE_POLL_MS: '0' });
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all([a?.cleanup(), b?.cleanup()]);
    await rm(dir, { recursive: true, force: true });
    await env?.destroy();
  });

  it('creates the listed registries at start, probed, with passwords from files', async () => {
    const res = await adminRequest(gw.server).get('/api/v1/registries').expect(200);
    expect(res.body.items).toEqual([
      expect.objectContaining({
        name: 'alpha',
        source: 'file',
        description: 'declared',
        probe: expect.objectContaining({ reachable: true }),
      }),
      expect.objectContaining({
        name: 'beta',
        source: 'file',
        hasPassword: true,
        probe: expect.objectContaining({ auth: 'ok' }),
      }),
    ]);
  });

  it('refuses API changes to file-managed registries', async () => {
    const res = await adminRequest(gw.server)
      .patch('/api/v1/registries/alpha')
      .send({ description: 'x' })
      .expect(409);
    expect(res.body.error.code).toBe('REGISTRY_MANAGED_BY_FILE');
    await adminRequest(gw.server).delete('/api/v1/registries/alpha').expect(409);
  });

  it('reads the secret files again: a password rotated in its file is applied, the YAML unchanged', async () => {
    const sync = gw.app.get(RegistriesFileSync);
    const authOf = async () =>
      (await adminRequest(gw.server).get('/api/v1/registries/beta').expect(200)).body.probe.auth as string;
    await writeFile(join(dir, 'password'), 'rotated-elsewhere\n');
    expect(await sync.syncNow()).toEqual({ created: [], updated: ['alpha', 'beta'], removed: [] });
    expect(await authOf()).not.toBe('ok');
    await writeFile(join(dir, 'password'), 'from-file\n');
    expect(await sync.syncNow()).toEqual({ created: [], updated: ['alpha', 'beta'], removed: [] });
    expect(await authOf()).toBe('ok');
    expect(await sync.syncNow()).toBeNull();
  });

  it('keeps the database in sync when the file changes, leaving API-created registries alone', async () => {
    await adminRequest(gw.server).post('/api/v1/registries').send({ name: 'manual', url: a.url }).expect(201);
    await writeFile(file, `registries:\n  - name: alpha\n    url: ${a.url}\n    description: changed\n`);
    const sync = gw.app.get(RegistriesFileSync);
    expect(await sync.syncNow()).toEqual({ created: [], updated: ['alpha'], removed: ['beta'] });
    expect(await sync.syncNow()).toBeNull();
    // Audited as the gateway's own doing, with the file as source; what the file did not change is not.
    type Event = { action: string; actor: { type: string }; details: { changed?: string[]; source: string } };
    const trail = async (name: string) =>
      (await adminRequest(gw.server).get(`/api/v1/audit-events?registry=${name}`).expect(200)).body
        .items as Event[];
    const alpha = await trail('alpha');
    expect(alpha.map((e) => e.action)).toEqual(['registry.updated', 'registry.registered']);
    expect(alpha[0]).toMatchObject({
      actor: { type: 'system' },
      details: { changed: ['description', 'tls.insecure'], source: 'file' },
    });
    expect((await trail('beta')).map((e) => e.action)).toEqual([
      'registry.unregistered',
      // The password rotated in its file and back (the test before).
      'registry.updated',
      'registry.updated',
      'registry.registered',
    ]);
    const res = await adminRequest(gw.server).get('/api/v1/registries').expect(200);
    // What the file no longer says is reset, not kept from before.
    type Row = { name: string; description: string | null; tlsInsecure: boolean };
    expect(res.body.items.map((r: Row) => [r.name, r.description, r.tlsInsecure])).toEqual([
      ['alpha', 'changed', false],
      ['manual', null, false],
    ]);
  });

  it('rejects an invalid file with a clear error and changes nothing', async () => {
    await writeFile(file, `registries:\n  - name: Not Valid\n    url: ftp://x\n`);
    const sync = gw.app.get(RegistriesFileSync);
    await expect(sync.syncNow()).rejects.toMatchObject({
      code: 'REGISTRIES_FILE_INVALID',
      message: expect.stringContaining('entry 0 (Not Valid)'),
    });
    await writeFile(
      file,
      `registries:\n  - name: alpha\n    url: ${a.url}\n  - name: alpha\n    url: ${a.url}\n`,
    );
    await expect(sync.syncNow()).rejects.toMatchObject({ message: expect.stringContaining('listed twice') });
    const res = await adminRequest(gw.server).get('/api/v1/registries').expect(200);
    expect(res.body.items.map((r: { name: string }) => r.name)).toEqual(['alpha', 'manual']);
  });

  it('applies deletes, eventsToken and eventsTokenFile, storing only the token hash', async () => {
    const token = 'file-token-0123456789abcdefghijkl';
    const sha256hex = (s: string) => createHash('sha256').update(s).digest('hex');
    await writeFile(join(dir, 'events-token'), `${token}\n`);
    await writeFile(
      file,
      `registries:
  - name: alpha
    url: ${a.url}
    deletes: { concurrency: 3, ratePerSecond: 10 }
    eventsTokenFile: ${join(dir, 'events-token')}
  - name: inline
    url: ${a.url}
    eventsToken: inline-token-0123456789abcdef
`,
    );
    const sync = gw.app.get(RegistriesFileSync);
    expect(await sync.syncNow()).toEqual({ created: ['inline'], updated: ['alpha'], removed: [] });
    const res = await adminRequest(gw.server).get('/api/v1/registries').expect(200);
    type Row = { name: string; deletes: unknown; hasEventsToken: boolean };
    expect(res.body.items.map((r: Row) => [r.name, r.deletes, r.hasEventsToken])).toEqual([
      ['alpha', { concurrency: 3, ratePerSecond: 10 }, true],
      ['inline', { concurrency: 8, ratePerSecond: null }, true],
      ['manual', { concurrency: 8, ratePerSecond: null }, false],
    ]);
    expect(JSON.stringify(res.body)).not.toContain(token);
    const rows = await env.query<{ name: string; events_token_hash: string | null }>(
      'SELECT name, events_token_hash FROM registries ORDER BY name',
    );
    expect(rows).toEqual([
      // The file's trailing newline is not part of the token.
      { name: 'alpha', events_token_hash: sha256hex(token) },
      { name: 'inline', events_token_hash: sha256hex('inline-token-0123456789abcdef') },
      { name: 'manual', events_token_hash: null },
    ]);
  });

  it('resets delete settings and the token the file no longer gives, and names bad values', async () => {
    const sync = gw.app.get(RegistriesFileSync);
    await writeFile(
      file,
      `registries:\n  - name: alpha\n    url: ${a.url}\n    deletes: { ratePerSecond: null }\n`,
    );
    expect(await sync.syncNow()).toEqual({ created: [], updated: ['alpha'], removed: ['inline'] });
    const alpha = (await adminRequest(gw.server).get('/api/v1/registries/alpha').expect(200)).body;
    expect(alpha).toMatchObject({ deletes: { concurrency: 8, ratePerSecond: null }, hasEventsToken: false });

    const bad: [string, RegExp][] = [
      ['deletes: { concurrency: 0 }', /deletes\.concurrency must not be less than 1/],
      ['deletes: { concurrency: 300 }', /deletes\.concurrency must not be greater than 256/],
      ['deletes: { ratePerSecond: 0 }', /deletes\.ratePerSecond must not be less than 1/],
      ['deletes: { concurency: 4 }', /property concurency should not exist/],
      ['eventsToken: short', /eventsToken must be longer than or equal to 24/],
    ];
    for (const [line, message] of bad) {
      await writeFile(file, `registries:\n  - name: alpha\n    url: ${a.url}\n    ${line}\n`);
      await expect(sync.syncNow(), line).rejects.toMatchObject({
        code: 'REGISTRIES_FILE_INVALID',
        message: expect.stringMatching(message),
      });
    }
  });
});
