import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { plainToInstance } from 'class-transformer';
import { validate, ValidationError as ClassValidatorError } from 'class-validator';
import { DataSource } from 'typeorm';
import { parse } from 'yaml';
import { AppConfig } from '../config/app-config.js';
import { SYSTEM_CONTEXT } from '../common/request-context.js';
import { DomainError } from '../common/domain-error.js';
import { CreateRegistryDto } from './registry.dto.js';
import { DEFAULT_DELETE_CONCURRENCY } from './registry.entity.js';
import { RegistriesService } from './registries.service.js';

interface FileRegistry {
  name: string;
  url: string;
  description?: string;
  auth?: { type: 'none' | 'basic' | 'bearer'; username?: string; password?: string; passwordFile?: string };
  tls?: { insecure?: boolean; caCert?: string; caFile?: string };
  deletes?: { concurrency?: number; ratePerSecond?: number | null };
  eventsToken?: string;
  eventsTokenFile?: string;
  /** Read by the GC feature (REGISTRIES_FILE_APPLIED); checked there. */
  gc?: unknown;
}

/** Emitted (awaited) after the file was applied, with each registry's raw sections for other features. */
export const REGISTRIES_FILE_APPLIED = 'registries.file.applied';

export interface RegistriesFileApplied {
  path: string;
  registries: { name: string; gc?: unknown }[];
}

// Any 64-bit number works; it only has to be the same in every replica.
const SYNC_LOCK = 0x7267_6669_6c65;

/**
 * Declarative registries: the YAML file named by REGISTRIES_FILE is applied at start and whenever it
 * changes. Registries it lists are created or updated and marked `source: file`; file-managed
 * registries it no longer lists are removed. Registries created through the API are left alone.
 */
@Injectable()
export class RegistriesFileSync implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(RegistriesFileSync.name);
  private timer: NodeJS.Timeout | undefined;
  private lastHash: string | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly config: AppConfig,
    private readonly registries: RegistriesService,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly events: EventEmitter2,
  ) {}

  async onApplicationBootstrap() {
    const { path, pollMs } = this.config.registriesFile;
    if (!path) return;
    // A broken file at start is fatal: better than serving with registries silently missing.
    await this.syncNow();
    if (pollMs > 0) {
      this.timer = setInterval(() => {
        this.running = this.running
          .then(() => this.syncNow())
          .then(
            () => undefined,
            (e: unknown) => this.logger.error(`registries file not applied: ${(e as Error).message}`),
          );
      }, pollMs);
      this.timer.unref();
    }
  }

  async onApplicationShutdown() {
    clearInterval(this.timer);
    await this.running;
  }

  /** Applies the file if its content changed since the last run. Returns what changed. */
  async syncNow(): Promise<{ created: string[]; updated: string[]; removed: string[] } | null> {
    const path = this.config.registriesFile.path;
    if (!path) return null;
    const text = await readFile(path, 'utf8');
    const hash = await fingerprint(text);
    if (hash === this.lastHash) return null;
    const wanted = await this.parse(text, path);
    const raw = (parse(text) as { registries?: FileRegistry[] } | null)?.registries ?? [];
    const result = await this.withLock(async () => {
      const applied = await this.apply(wanted);
      // Features that keep per-registry settings of their own (GC) apply their sections now; a section
      // they refuse fails the sync like a bad registry entry would.
      await this.events.emitAsync(REGISTRIES_FILE_APPLIED, {
        path,
        registries: raw.map((r) => ({ name: r.name, gc: r.gc })),
      } satisfies RegistriesFileApplied);
      return applied;
    });
    this.lastHash = hash;
    if (result.created.length + result.updated.length + result.removed.length > 0) {
      this.logger.log(
        `registries file applied: created [${result.created}] updated [${result.updated}] removed [${result.removed}]`,
      );
    }
    return result;
  }

  private async apply(wanted: CreateRegistryDto[]) {
    const existing = new Map((await this.registries.list()).map((r) => [r.name, r]));
    const result = { created: [] as string[], updated: [] as string[], removed: [] as string[] };
    for (const dto of wanted) {
      const current = existing.get(dto.name);
      if (!current) {
        await this.registries.create(dto, SYSTEM_CONTEXT, 'file');
        result.created.push(dto.name);
      } else {
        const { name: _name, ...changes } = dto;
        await this.registries.update(dto.name, changes, SYSTEM_CONTEXT, 'file');
        result.updated.push(dto.name);
      }
    }
    const names = new Set(wanted.map((w) => w.name));
    for (const r of existing.values()) {
      if (r.source === 'file' && !names.has(r.name)) {
        await this.registries.remove(r.name, SYSTEM_CONTEXT, 'file');
        result.removed.push(r.name);
      }
    }
    return result;
  }

  private async parse(text: string, path: string): Promise<CreateRegistryDto[]> {
    let doc: { registries?: FileRegistry[] } | null;
    try {
      doc = parse(text) as { registries?: FileRegistry[] } | null;
    } catch (e) {
      throw fileError(path, `is not valid YAML: ${(e as Error).message}`);
    }
    const list = doc?.registries ?? [];
    if (!Array.isArray(list)) throw fileError(path, '"registries" must be a list');
    const seen = new Set<string>();
    const out: CreateRegistryDto[] = [];
    for (const [i, r] of list.entries()) {
      const plain = {
        name: r?.name,
        url: r?.url,
        // The file is the whole truth for its registries: what it leaves out is reset to the default.
        description: r?.description ?? '',
        auth: r?.auth
          ? {
              type: r.auth.type,
              username: r.auth.username,
              password: r.auth.passwordFile
                ? (await readFile(r.auth.passwordFile, 'utf8')).trim()
                : r.auth.password,
            }
          : { type: 'none' },
        tls: {
          insecure: r?.tls?.insecure ?? false,
          caCert: r?.tls?.caFile ? await readFile(r.tls.caFile, 'utf8') : (r?.tls?.caCert ?? ''),
        },
        // Spread, so a misspelt key is refused rather than ignored.
        deletes: {
          ...r?.deletes,
          concurrency: r?.deletes?.concurrency ?? DEFAULT_DELETE_CONCURRENCY,
          ratePerSecond: r?.deletes?.ratePerSecond ?? null,
        },
        eventsToken: r?.eventsTokenFile
          ? (await readFile(r.eventsTokenFile, 'utf8')).trim()
          : (r?.eventsToken ?? ''),
      };
      const dto = plainToInstance(CreateRegistryDto, plain);
      const errors = await validate(dto, { whitelist: true, forbidNonWhitelisted: true });
      if (errors.length) {
        const msgs = errors.flatMap((e) => problems(e));
        throw fileError(path, `entry ${i} (${r?.name ?? 'unnamed'}): ${msgs.join('; ')}`);
      }
      if (seen.has(dto.name)) throw fileError(path, `registry "${dto.name}" is listed twice`);
      seen.add(dto.name);
      out.push(dto);
    }
    return out;
  }

  /** Replicas apply the file one at a time; the changes are idempotent, so the second one finds nothing to do. */
  private async withLock<T>(fn: () => Promise<T>): Promise<T> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.query('SELECT pg_advisory_lock($1)', [SYNC_LOCK]);
      return await fn();
    } finally {
      await runner.query('SELECT pg_advisory_unlock($1)', [SYNC_LOCK]).catch(() => undefined);
      await runner.release();
    }
  }
}

/** Every constraint message, nested ones prefixed with their parent (`deletes.concurrency must ...`). */
function problems(e: ClassValidatorError, parent = ''): string[] {
  const own = Object.values(e.constraints ?? {}).map((m) => parent + m);
  const nested = (e.children ?? []).flatMap((c) => problems(c, `${parent}${e.property}.`));
  return own.concat(nested.length || !e.children?.length ? nested : [`${parent}${e.property} is invalid`]);
}

function fileError(path: string, message: string): DomainError {
  return new DomainError('REGISTRIES_FILE_INVALID', `registries file ${path} ${message}`, 500, { path });
}

/**
 * What a sync depends on: the file's text and the contents of every file it names (`passwordFile`,
 * `caFile`, `eventsTokenFile`, the gc sections' secret files): a secret rotated in its own file (a mounted
 * Kubernetes secret, say) is a change though the YAML is not.
 */
async function fingerprint(text: string): Promise<string> {
  const hash = createHash('sha256').update(text);
  const named = async (value: unknown): Promise<void> => {
    if (Array.isArray(value)) for (const v of value) await named(v);
    else if (value && typeof value === 'object')
      for (const [key, v] of Object.entries(value)) {
        if (key.endsWith('File') && typeof v === 'string')
          hash.update(`\0${v}\0`).update(await readFile(v).catch(() => 'unreadable'));
        else await named(v);
      }
  };
  // A file that does not parse is reported by the parse that follows; its text alone is its fingerprint.
  await named(
    (() => {
      try {
        return parse(text) as unknown;
      } catch {
        return null;
      }
    })(),
  );
  return hash.digest('hex');
}
