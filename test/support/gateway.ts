import type { INestApplicationContext } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { createApiApp } from '../../src/app.module.js';
import { createWorkerApp } from '../../src/worker.module.js';
import { AppConfig, loadConfig } from '../../src/config/app-config.js';
import { TestEnvironment } from './environment.js';

export { TestEnvironment, TEST_DATABASE_URL, TEST_REDIS_URL } from './environment.js';

/** The bootstrap admin token of every test gateway (GATEWAY_ADMIN_TOKEN): global admin. */
export const ADMIN_TOKEN = 'rg-test-admin-token-0123456789abcdef';
/** Headers of a global admin: `request(gw.server).get(...).set(asAdmin)`. */
export const asAdmin = { authorization: `Bearer ${ADMIN_TOKEN}` } as const;
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** supertest as the bootstrap admin: `adminRequest(gw.server).get('/api/v1/registries')`. */
export function adminRequest(server: TestGateway['server']) {
  return request.agent(server).set(asAdmin);
}

/**
 * A service account bound to `role` (on `scope`: a registry, a repository glob of it, or everywhere), and
 * an API token of it: the principal a permission test acts as.
 */
export async function boundServiceAccount(
  server: TestGateway['server'],
  name: string,
  role: string,
  scope: { registry?: string; repository?: string },
): Promise<{ id: string; token: string }> {
  const admin = () => adminRequest(server);
  const sa = (await admin().post('/api/v1/service-accounts').send({ name }).expect(201)).body as {
    id: string;
  };
  await admin()
    .post('/api/v1/role-bindings')
    .send({ subject: { type: 'service_account', id: sa.id }, role, ...scope })
    .expect(201);
  const { token } = (await admin().post(`/api/v1/service-accounts/${sa.id}/tokens`).send({}).expect(201))
    .body as { token: string };
  return { id: sa.id, token };
}

export function testConfig(env: TestEnvironment, overrides: Record<string, string> = {}): AppConfig {
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN,
    ...env.gatewayEnv(),
    ...overrides,
  });
}

export interface TestGateway {
  app: NestFastifyApplication;
  /** The Node http.Server, for supertest. */
  server: ReturnType<NestFastifyApplication['getHttpServer']>;
  close(): Promise<void>;
}

/** The real API application, in process, on the suite's own database and Redis prefix. */
export async function startApi(
  env: TestEnvironment,
  overrides: Record<string, string> = {},
): Promise<TestGateway> {
  const app = await createApiApp(testConfig(env, overrides));
  return { app, server: app.getHttpServer(), close: () => app.close() };
}

export async function startWorker(
  env: TestEnvironment,
  overrides: Record<string, string> = {},
): Promise<INestApplicationContext> {
  return createWorkerApp(testConfig(env, overrides));
}
