import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root (bench/support/../..), so the bench finds dist/ and .data/ from any working directory. */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Datasets and logs the benchmarks keep between runs (git-ignored with the rest of .data/). */
export const BENCH_DATA_DIR = join(PROJECT_ROOT, '.data', 'bench');

export interface BenchContext {
  /** Multiplies dataset sizes (--scale); 1 is the size each issue specifies. */
  scale: number;
  /** Seed datasets again even when a stored one matches (--reseed). */
  reseed: boolean;
  log(message: string): void;
}

/**
 * One line of the summary. `target` and `ok` only on lines that have a target; a missed target is
 * reported, not thrown: benchmarks measure, tests decide.
 */
export interface Metric {
  label: string;
  value: string;
  target?: string;
  ok?: boolean;
}

export interface BenchReport {
  name: string;
  metrics: Metric[];
}

export interface Benchmark {
  /** What --only selects. */
  name: string;
  title: string;
  run(ctx: BenchContext): Promise<BenchReport>;
}

/** Thrown when a benchmark measured something wrong (not merely slow); run.ts then exits non-zero. */
export class BenchFailure extends Error {
  override name = 'BenchFailure';
}
