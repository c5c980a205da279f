import 'reflect-metadata';
import { createWorkerApp } from './worker.module.js';
import { ConfigError, loadConfig } from './config/app-config.js';

async function main() {
  const config = loadConfig();
  await createWorkerApp(config);
}

main().catch((err: unknown) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
