import type { INestApplicationContext } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { createApiApp, createWorkerApp } from '../../src/app.module.js';
import { AppConfig, loadConfig } from '../../src/config/app-config.js';
import { TestEnvironment } from './environment.js';

export { TestEnvironment, TEST_DATABASE_URL, TEST_REDIS_URL } from './environment.js';

export function testConfig(env: TestEnvironment, overrides: Record<string, string> = {}): AppConfig {
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
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
