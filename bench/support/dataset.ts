import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { ImagePusher, seedManyRepositories, type ImageFormat } from '../../test/support/image-pusher.js';
import { RegistryProcess } from '../../test/support/registry-process.js';
import { BENCH_DATA_DIR, PROJECT_ROOT, type BenchContext } from './bench.js';
import { formatSeconds } from './stats.js';

interface Marker {
  key: string;
  seededAt: string;
  seedSeconds: number;
}

export interface StoredDataset {
  /** The dataset's folder under .data/bench/ (runs may put their copies beside `storage`). */
  dir: string;
  /** A registry storage folder (its `rootdirectory`), complete. */
  storage: string;
  /** For the summary: reused (when seeded) or seeded now (how fast). */
  seeding: string;
}

/**
 * A registry storage seeded once under .data/bench/<name>/ and reused while its marker, written only
 * after a complete seed, names the same `key` (and --reseed is not given). `seed` fills the storage
 * folder through a registry of its own and must stop that registry before it returns.
 */
export async function storedDataset(
  ctx: BenchContext,
  name: string,
  key: Record<string, unknown>,
  seed: (storage: string) => Promise<{ images: number }>,
): Promise<StoredDataset> {
  const dir = join(BENCH_DATA_DIR, name);
  const storage = join(dir, 'storage');
  const markerPath = join(dir, 'dataset.json');
  const wanted = JSON.stringify(key);
  let marker: Marker | undefined;
  try {
    marker = JSON.parse(await readFile(markerPath, 'utf8')) as Marker;
  } catch {
    marker = undefined;
  }
  if (marker?.key === wanted && !ctx.reseed) {
    return {
      dir,
      storage,
      seeding: `reused ${relative(PROJECT_ROOT, dir)} (seeded in ${formatSeconds(marker.seedSeconds)} on ${marker.seededAt.slice(0, 10)}; --reseed to redo)`,
    };
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(storage, { recursive: true });
  const t0 = performance.now();
  const { images } = await seed(storage);
  const seedSeconds = (performance.now() - t0) / 1000;
  const done: Marker = { key: wanted, seededAt: new Date().toISOString(), seedSeconds };
  await writeFile(markerPath, `${JSON.stringify(done, null, 2)}\n`);
  return {
    dir,
    storage,
    seeding: `seeded now in ${formatSeconds(seedSeconds)} (${Math.round(images / seedSeconds)} images/s); kept in ${relative(PROJECT_ROOT, dir)}`,
  };
}

/**
 * Seeds `repositories` x `tagsPerRepository` images (every tag its own manifest, one shared layer) into
 * `storage` through a registry started for it, with progress in the log; the registry is stopped after.
 */
export async function seedRepositories(
  ctx: BenchContext,
  storage: string,
  opts: {
    what: string;
    prefix: string;
    repositories: number;
    tagsPerRepository: number;
    concurrency: number;
    format: ImageFormat;
    layerSize: number;
  },
): Promise<{ images: number }> {
  const registry = await RegistryProcess.start({ rootDir: storage });
  try {
    const images = opts.repositories * opts.tagsPerRepository;
    ctx.log(
      `${opts.what}: seeding ${opts.repositories} repositories x ${opts.tagsPerRepository} tags (${images} images) once`,
    );
    const pusher = new ImagePusher(registry.url, { connections: opts.concurrency });
    const t0 = performance.now();
    const step = Math.max(1, Math.round(opts.repositories / 10));
    try {
      await seedManyRepositories(pusher, {
        prefix: opts.prefix,
        repositories: opts.repositories,
        tagsPerRepository: opts.tagsPerRepository,
        concurrency: opts.concurrency,
        format: opts.format,
        layerSize: opts.layerSize,
        onProgress: (done) => {
          if (done % step === 0 || done === opts.repositories)
            ctx.log(
              `${opts.what}: seeded ${done}/${opts.repositories} repositories in ${formatSeconds((performance.now() - t0) / 1000)}`,
            );
        },
      });
    } finally {
      await pusher.close();
    }
    return { images };
  } finally {
    // Stopped before the marker is written: copies must not race a registry still writing.
    await registry.cleanup();
  }
}
