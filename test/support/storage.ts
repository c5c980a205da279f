import type { GcExecutor } from '../../src/gc/executors/gc-executor.js';
import { snapshotInParts } from '../../src/gc/gc-storage.js';

/** The registry's storage as a GC run measures it: read through the executor, where the registry lives. */
export async function storageBytes(executor: GcExecutor): Promise<number> {
  return (await snapshotInParts(executor, executor.storagePath).whole).bytes;
}
