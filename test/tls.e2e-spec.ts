import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';
import { RegistryProcess } from './support/registry-process.js';
import { TestCertificates, makeCertificates } from './support/tls.js';
import { ImagePusher } from './support/image-pusher.js';

describe('registries served over TLS', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let certs: TestCertificates;
  let registry: RegistryProcess;

  beforeAll(async () => {
    env = await TestEnvironment.create('tls');
    certs = await makeCertificates();
    registry = await RegistryProcess.start({ tls: { certPath: certs.certPath, keyPath: certs.keyPath } });
    // The test process itself trusts the private CA only for pushing the fixture.
    const pusher = new ImagePusher(registry.url, { ca: certs.caPem });
    await pusher.pushImage('secure/app', ['1'], { seed: 'tls' });
    await pusher.close();
    gw = await startApi(env);
  });

  afterAll(async () => {
    await gw?.close();
    await registry?.cleanup();
    await certs?.cleanup();
    await env?.destroy();
  });

  it('refuses an untrusted certificate with UPSTREAM_TLS_ERROR', async () => {
    const res = await adminRequest(gw.server)
      .post('/api/v1/registries')
      .send({ name: 'untrusted', url: registry.url })
      .expect(201);
    expect(res.body.probe).toMatchObject({ reachable: false, error: { code: 'UPSTREAM_TLS_ERROR' } });
    const call = await adminRequest(gw.server).get('/api/v1/registries/untrusted/repositories').expect(502);
    expect(call.body.error.code).toBe('UPSTREAM_TLS_ERROR');
  });

  it('trusts the registry through its CA bundle', async () => {
    const res = await adminRequest(gw.server)
      .post('/api/v1/registries')
      .send({ name: 'trusted', url: registry.url, tls: { caCert: certs.caPem } })
      .expect(201);
    expect(res.body).toMatchObject({ hasCaCert: true, probe: { reachable: true, deletes: 'enabled' } });
    const repos = await adminRequest(gw.server).get('/api/v1/registries/trusted/repositories').expect(200);
    expect(repos.body.items).toEqual([{ name: 'secure/app', tagCount: 1 }]);
  });

  it('skips verification only when told to', async () => {
    const res = await adminRequest(gw.server)
      .post('/api/v1/registries')
      .send({ name: 'insecure', url: registry.url, tls: { insecure: true } })
      .expect(201);
    expect(res.body).toMatchObject({ tlsInsecure: true, probe: { reachable: true } });
    await adminRequest(gw.server)
      .patch('/api/v1/registries/insecure')
      .send({ tls: { insecure: false } })
      .expect(200);
    const after = await adminRequest(gw.server).get('/api/v1/registries/insecure/repositories').expect(502);
    expect(after.body.error.code).toBe('UPSTREAM_TLS_ERROR');
  });

  it('rejects a CA that is not PEM', async () => {
    const res = await adminRequest(gw.server)
      .post('/api/v1/registries')
      .send({ name: 'bad-ca', url: registry.url, tls: { caCert: 'not a certificate' } })
      .expect(400);
    expect(res.body.error).toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'tls.caCert' } });
  });
});
