import { loadConfig } from '../config/app-config.js';
import { createDataSource } from './data-source.js';
import { runMigrationsLocked } from './migrations-runner.js';

/** `npm run migrate`: applies pending migrations (the API also does this at start unless disabled). */
async function main() {
  const config = loadConfig();
  // Two connections: one holds the advisory lock while the migrations run on the other.
  const ds = createDataSource(config.database.url, 2);
  await ds.initialize();
  const ran = await runMigrationsLocked(ds);
  for (const m of ran) console.log(`applied ${m.name}`);
  if (ran.length === 0) console.log('database is up to date');
  await ds.destroy();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
