import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistriesService } from '../src/registries/registries.service.js';
import { RegistryClients } from '../src/registries/registry-clients.service.js';
import { adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';
import { RegistryProcess } from './support/registry-process.js';

const sha256hex = (s: string) => createHash('sha256').update(s).digest('hex');

describe('per-registry delete settings and events token', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let registry: RegistryProcess;
  const token = randomBytes(24).toString('base64url');
  const http = () => adminRequest(gw.server);
  const stored = async (name: string) =>
    (
      await env.query<{
        delete_concurrency: number;
        delete_rate_per_second: number | null;
        events_token_hash: string | null;
      }>(
        'SELECT delete_concurrency, delete_rate_per_second, events_token_hash FROM registries WHERE name = $1',
        [name],
      )
    )[0];

  beforeAll(async () => {
    env = await TestEnvironment.create('registry_settings');
    registry = await RegistryProcess.start();
    gw = await startApi(env);
  });

  afterAll(async () => {
    await gw?.close();
    await registry?.cleanup();
    await env?.destroy();
  });

  it('starts with 8 concurrent deletes, no rate limit and no events token', async () => {
    const res = await http()
      .post('/api/v1/registries')
      .send({ name: 'plain', url: registry.url })
      .expect(201);
    expect(res.body.deletes).toEqual({ concurrency: 8, ratePerSecond: null });
    expect(res.body.hasEventsToken).toBe(false);
    expect(res.body).not.toHaveProperty('eventsToken');
    expect(res.body).not.toHaveProperty('eventsTokenHash');
    expect(await stored('plain')).toEqual({
      delete_concurrency: 8,
      delete_rate_per_second: null,
      events_token_hash: null,
    });
  });

  it('sets them without re-probing or replacing the upstream client, and never returns the token', async () => {
    const service = gw.app.get(RegistriesService);
    const clients = gw.app.get(RegistryClients);
    const before = await service.get('plain');
    const clientBefore = clients.for(before);

    const res = await http()
      .patch('/api/v1/registries/plain')
      .send({ deletes: { concurrency: 32, ratePerSecond: 50 }, eventsToken: token })
      .expect(200);
    expect(res.body.deletes).toEqual({ concurrency: 32, ratePerSecond: 50 });
    expect(res.body.hasEventsToken).toBe(true);
    expect(res.body.probe.checkedAt).toBe(before.probe!.checkedAt);
    expect(JSON.stringify(res.body)).not.toContain(token);
    expect(JSON.stringify(res.body)).not.toContain(sha256hex(token));
    expect(await stored('plain')).toEqual({
      delete_concurrency: 32,
      delete_rate_per_second: 50,
      events_token_hash: sha256hex(token),
    });
    const after = await service.get('plain');
    expect(after.deleteConcurrency).toBe(32);
    expect(after.deleteRatePerSecond).toBe(50);
    expect(clients.for(after)).toBe(clientBefore);

    const listed = await http().get('/api/v1/registries').expect(200);
    const one = await http().get('/api/v1/registries/plain').expect(200);
    for (const body of [listed.body, one.body]) {
      expect(JSON.stringify(body)).not.toContain(token);
      expect(JSON.stringify(body)).not.toContain(sha256hex(token));
    }
    expect(one.body).toMatchObject({ deletes: { concurrency: 32, ratePerSecond: 50 }, hasEventsToken: true });

    // A connection change still gets a new client and a new probe.
    const moved = await http()
      .patch('/api/v1/registries/plain')
      .send({ url: `${registry.url}/`, tls: { insecure: true } })
      .expect(200);
    expect(moved.body.probe.checkedAt).not.toBe(before.probe!.checkedAt);
    expect(clients.for(await service.get('plain'))).not.toBe(clientBefore);
  });

  it('changes only what is given, and clears the rate limit with null and the token with ""', async () => {
    const keep = await http()
      .patch('/api/v1/registries/plain')
      .send({ deletes: { ratePerSecond: 5 } })
      .expect(200);
    expect(keep.body.deletes).toEqual({ concurrency: 32, ratePerSecond: 5 });
    await http().patch('/api/v1/registries/plain').send({ deletes: {} }).expect(200);
    await http().patch('/api/v1/registries/plain').send({ description: 'x' }).expect(200);
    expect((await http().get('/api/v1/registries/plain').expect(200)).body).toMatchObject({
      deletes: { concurrency: 32, ratePerSecond: 5 },
      hasEventsToken: true,
    });

    const cleared = await http()
      .patch('/api/v1/registries/plain')
      .send({ deletes: { ratePerSecond: null }, eventsToken: '' })
      .expect(200);
    expect(cleared.body.deletes).toEqual({ concurrency: 32, ratePerSecond: null });
    expect(cleared.body.hasEventsToken).toBe(false);
    expect(await stored('plain')).toEqual({
      delete_concurrency: 32,
      delete_rate_per_second: null,
      events_token_hash: null,
    });
  });

  it('takes the settings at creation too', async () => {
    const res = await http()
      .post('/api/v1/registries')
      .send({
        name: 'tuned',
        url: registry.url,
        deletes: { concurrency: 1, ratePerSecond: 1 },
        eventsToken: 'x'.repeat(512),
      })
      .expect(201);
    expect(res.body).toMatchObject({ deletes: { concurrency: 1, ratePerSecond: 1 }, hasEventsToken: true });
    expect((await stored('tuned')).events_token_hash).toBe(sha256hex('x'.repeat(512)));
    const max = await http()
      .patch('/api/v1/registries/tuned')
      .send({ deletes: { concurrency: 256 } })
      .expect(200);
    expect(max.body.deletes.concurrency).toBe(256);
  });

  it('keeps the probe a change stored when a probe of the registry as it was comes after it', async () => {
    await http().post('/api/v1/registries').send({ name: 'moving', url: registry.url }).expect(201);
    const registries = gw.app.get(RegistriesService);
    // What the scheduled probe holds: every registry as it read them when it started.
    const asRead = await registries.get('moving');
    // The registry moves (nothing listens on port 9): the change probes the new address.
    await http().patch('/api/v1/registries/moving').send({ url: 'http://127.0.0.1:9' }).expect(200);
    const reachable = async () =>
      (await http().get('/api/v1/registries/moving').expect(200)).body.probe.reachable as boolean;
    expect(await reachable()).toBe(false);
    await registries.probe(asRead);
    expect(await reachable()).toBe(false);
    await http().delete('/api/v1/registries/moving').expect(204);
  });

  it('refuses bad values with VALIDATION_FAILED and changes nothing', async () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ deletes: { concurrency: 0 } }, /concurrency must not be less than 1/],
      [{ deletes: { concurrency: 257 } }, /concurrency must not be greater than 256/],
      [{ deletes: { concurrency: 1.5 } }, /concurrency must be an integer/],
      [{ deletes: { concurrency: '8' } }, /concurrency must be an integer/],
      [{ deletes: { concurrency: null } }, /concurrency must be an integer/],
      [{ deletes: { ratePerSecond: 0 } }, /ratePerSecond must not be less than 1/],
      [{ deletes: { ratePerSecond: -3 } }, /ratePerSecond must not be less than 1/],
      [{ deletes: { ratePerSecond: 2.5 } }, /ratePerSecond must be an integer/],
      [{ deletes: { ratePerSecond: 2 ** 31 } }, /ratePerSecond must not be greater than/],
      [{ deletes: { parallel: 3 } }, /property parallel should not exist/],
      [{ deletes: 4 }, /deletes/],
      [{ eventsToken: 'too-short' }, /eventsToken must be longer than or equal to 24/],
      [{ eventsToken: 'x'.repeat(513) }, /eventsToken must be shorter than or equal to 512/],
      [{ eventsToken: 'has a space in the middle of it' }, /eventsToken must be visible ASCII/],
      [{ eventsToken: 123456789 }, /eventsToken must be a string/],
      [{ eventsToken: null }, /eventsToken must be a string/],
      [{ eventsTokenHash: sha256hex('x') }, /property eventsTokenHash should not exist/],
      // Omittable, not nullable: auth {type: 'none'} clears credentials.
      [{ auth: null }, /auth may be left out, but not null/],
      [{ tls: null }, /tls may be left out, but not null/],
      [{ deletes: null }, /deletes may be left out, but not null/],
    ];
    for (const [body, message] of bad) {
      const res = await http().patch('/api/v1/registries/tuned').send(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_FAILED');
      expect(res.body.error.message, JSON.stringify(body)).toMatch(message);
    }
    const created = await http()
      .post('/api/v1/registries')
      .send({ name: 'never', url: registry.url, deletes: { concurrency: 0 } })
      .expect(400);
    expect(created.body.error.code).toBe('VALIDATION_FAILED');
    const noAuth = await http()
      .post('/api/v1/registries')
      .send({ name: 'never', url: registry.url, auth: null })
      .expect(400);
    expect(noAuth.body.error.code).toBe('VALIDATION_FAILED');
    await http().get('/api/v1/registries/never').expect(404);
    expect(await stored('tuned')).toEqual({
      delete_concurrency: 256,
      delete_rate_per_second: 1,
      events_token_hash: sha256hex('x'.repeat(512)),
    });
  });

  it('works through GraphQL, where the token cannot be read either', async () => {
    const gql = (query: string) => http().post('/graphql').send({ query }).expect(200);
    const created = await gql(
      `mutation { createRegistry(input: { name: "gql", url: "${registry.url}", deletes: { concurrency: 4, ratePerSecond: 20 }, eventsToken: "${token}" }) { name deletes { concurrency ratePerSecond } hasEventsToken } }`,
    );
    expect(created.body.data.createRegistry).toEqual({
      name: 'gql',
      deletes: { concurrency: 4, ratePerSecond: 20 },
      hasEventsToken: true,
    });
    const updated = await gql(
      'mutation { updateRegistry(name: "gql", input: { deletes: { ratePerSecond: null }, eventsToken: "" }) { deletes { concurrency ratePerSecond } hasEventsToken } }',
    );
    expect(updated.body.data.updateRegistry).toEqual({
      deletes: { concurrency: 4, ratePerSecond: null },
      hasEventsToken: false,
    });
    const invalid = await gql(
      'mutation { updateRegistry(name: "gql", input: { deletes: { concurrency: 0 } }) { name } }',
    );
    expect(invalid.body.errors[0].extensions.code).toBe('VALIDATION_FAILED');
    const noField = await http()
      .post('/graphql')
      .send({ query: '{ registry(name: "gql") { eventsToken } }' });
    expect(noField.body.errors[0].message).toMatch(/Cannot query field "eventsToken"/);
  });

  it('audits registering, changing and unregistering, naming what changed and never a secret', async () => {
    await http().post('/api/v1/registries').send({ name: 'audited', url: registry.url }).expect(201);
    const secrets = { auth: { type: 'basic', username: 'ci', password: 'not-in-the-trail' } };
    await http()
      .patch('/api/v1/registries/audited')
      .send({ description: 'team registry', ...secrets })
      .expect(200);
    // The same again changes nothing, and is not audited.
    await http()
      .patch('/api/v1/registries/audited')
      .send({ description: 'team registry', ...secrets })
      .expect(200);
    await http()
      .patch('/api/v1/registries/audited')
      .send({ deletes: { concurrency: 4 }, eventsToken: token })
      .expect(200);
    await http().delete('/api/v1/registries/audited').expect(204);

    type Event = {
      action: string;
      actor: { type: string };
      subject: { type: string };
      details: Record<string, unknown>;
    };
    const events = (await http().get('/api/v1/audit-events?registry=audited').expect(200)).body
      .items as Event[];
    expect(events.map((e) => e.action)).toEqual([
      'registry.unregistered',
      'registry.updated',
      'registry.updated',
      'registry.registered',
    ]);
    expect(events.every((e) => e.actor.type !== 'system' && e.subject.type === 'registry')).toBe(true);
    expect(events[3].details).toMatchObject({ url: registry.url, authType: 'none', source: 'api' });
    expect(events[2].details.changed).toEqual(['description', 'auth.type', 'auth.username', 'auth.password']);
    expect(events[1].details.changed).toEqual(['deletes.concurrency', 'eventsToken']);
    expect(events[0].details).toMatchObject({ url: registry.url, source: 'api' });
    const trail = JSON.stringify(events);
    expect(trail).not.toContain('not-in-the-trail');
    expect(trail).not.toContain(token);
    expect(trail).not.toContain(sha256hex(token));
  });

  it('documents the fields in OpenAPI, the token as write-only input', async () => {
    const { components } = (await http().get('/docs/openapi.json').expect(200)).body;
    const view = components.schemas.RegistryView.properties;
    expect(view).toHaveProperty('deletes');
    expect(view).toHaveProperty('hasEventsToken');
    expect(view).not.toHaveProperty('eventsToken');
    expect(components.schemas.UpdateRegistryDto.properties.eventsToken).toMatchObject({
      writeOnly: true,
      minLength: 24,
      maxLength: 512,
    });
    expect(components.schemas.RegistryDeletesDto.properties.concurrency).toMatchObject({
      minimum: 1,
      maximum: 256,
    });
  });
});
