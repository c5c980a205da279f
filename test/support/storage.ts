import type { GcExecutor } from '../../src/gc/executors/gc-executor.js';
import { snapshotInParts } from '../../src/gc/gc-storage.js';

/** The registry's storage as a GC run measures it: read through the executor, where the registry lives. */
export async function storageBytes(executor: GcExecutor): Promise<number> {
  return (await snapshotInParts(executor, executor.storagePath).whole).bytes;
}

/** What a command under `nice -n <n>` runs: the fake executors' peers behave as the command itself. */
export function withoutNice(argv: string[]): string[] {
  return argv[0] === 'nice' && argv[1] === '-n' ? argv.slice(3) : argv;
}
