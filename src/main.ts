import 'reflect-metadata';
import { createApiApp } from './app.module.js';
import { ConfigError, loadConfig } from './config/app-config.js';

async function main() {
  const config = loadConfig();
  const app = await createApiApp(config);
  await app.listen({ port: config.http.port, host: config.http.host });
}

main().catch((err: unknown) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
