import type { GcExecutor } from '../../src/gc/executors/gc-executor.js';
import { snapshotInParts } from '../../src/gc/gc-storage.js';

/** The registry's storage as a GC run measures it: read through the executor, where the registry lives. */
export async function storageBytes(executor: GcExecutor): Promise<number> {
  return (await snapshotInParts(executor, executor.storagePath).whole).bytes;
}

/**
 * The program a wrapped command runs, as the fake peers see it: `env K=V ... argv` and `nice -n <n> argv`
 * behave as argv, as `env` and `nice` would.
 */
export function programOf(argv: string[]): string[] {
  let rest = argv;
  if (rest[0] === 'env') {
    let i = 1;
    while (i < rest.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(rest[i])) i++;
    rest = rest.slice(i);
  }
  return rest[0] === 'nice' && rest[1] === '-n' ? rest.slice(3) : rest;
}
