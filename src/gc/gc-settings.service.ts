import { InjectQueue } from '@nestjs/bullmq';
import { readFile } from 'node:fs/promises';
import { Injectable, Logger } from '@nestjs/common';
import { EventEmitter2, OnEvent } from '@nestjs/event-emitter';
import { plainToInstance } from 'class-transformer';
import { validate, ValidationError as ClassValidatorError } from 'class-validator';
import { InjectDataSource } from '@nestjs/typeorm';
import { Queue } from 'bullmq';
import { CronExpressionParser } from 'cron-parser';
import { DataSource } from 'typeorm';
import { auditBase, recordAudit } from '../audit/audit-event.js';
import { DomainError, NotFoundError, ValidationError } from '../common/domain-error.js';
import type { RequestContext } from '../common/request-context.js';
import { SecretBox } from '../common/secret-box.js';
import { Jobs, Queues, type GcRegistryPayload } from '../queue/queue.constants.js';
import {
  REGISTRIES_FILE_APPLIED,
  type RegistriesFileApplied,
} from '../registries/registries-file.service.js';
import { RegistriesService } from '../registries/registries.service.js';
import type { RegistryEntity } from '../registries/registry.entity.js';
import { createExecutor, executorCapabilities } from './executors/executor-factory.js';
import type { GcExecutor, GcExecutorConfig, GcExecutorSecrets } from './executors/gc-executor.js';
import { GcExecutorDto, secretsFor, secretsState, toExecutorConfig } from './executors/gc-executor.dto.js';
import { GcSettingsDto, GcSettingsView } from './gc-settings.dto.js';
import { GcSettingsEntity } from './gc.entity.js';

export const scheduleJobId = (registryId: string) => `gc-schedule-${registryId}`;

/** Per-registry GC configuration: executor (secrets sealed), fence, cache, grace window, schedule. */
@Injectable()
export class GcSettingsService {
  private readonly logger = new Logger(GcSettingsService.name);

  constructor(
    @InjectDataSource() private readonly ds: DataSource,
    private readonly registries: RegistriesService,
    private readonly box: SecretBox,
    private readonly events: EventEmitter2,
    @InjectQueue(Queues.gc) private readonly queue: Queue,
  ) {}

  async find(registryId: string): Promise<GcSettingsEntity | null> {
    return this.ds.getRepository(GcSettingsEntity).findOneBy({ registryId });
  }

  /** The settings, or GC_NOT_CONFIGURED: a registry without an executor cannot be collected. */
  async require(registry: Pick<RegistryEntity, 'id' | 'name'>): Promise<GcSettingsEntity> {
    const s = await this.find(registry.id);
    if (!s)
      throw new DomainError(
        'GC_NOT_CONFIGURED',
        `registry "${registry.name}" has no GC executor; configure one with PUT /api/v1/registries/${registry.name}/gc-settings`,
        409,
        { registry: registry.name },
      );
    return s;
  }

  async get(registryName: string): Promise<GcSettingsView> {
    const registry = await this.registries.get(registryName);
    const s = await this.find(registry.id);
    if (!s)
      throw new NotFoundError('GC_NOT_CONFIGURED', `registry "${registry.name}" has no GC settings`, {
        registry: registry.name,
      });
    return this.toView(registry, s);
  }

  async put(registryName: string, dto: GcSettingsDto, ctx: RequestContext): Promise<GcSettingsView> {
    const registry = await this.registries.get(registryName);
    const previous = await this.find(registry.id);
    if (previous?.source === 'file') throw managedByFile(registry.name);
    return this.apply(registry, previous, dto, ctx, 'api');
  }

  /**
   * The registries file's `gc:` sections: each registry listed with one gets exactly these settings
   * (source `file`, not changeable through the API); file-managed settings no longer listed are removed.
   */
  @OnEvent(REGISTRIES_FILE_APPLIED, { suppressErrors: false })
  async applyFile(e: RegistriesFileApplied): Promise<void> {
    const ctx: RequestContext = {
      actor: { type: 'system', id: 'registries-file', name: 'registries file' },
      sourceIp: null,
      requestId: null,
    };
    const listed = new Map(e.registries.map((r) => [r.name, r.gc]));
    for (const registry of await this.registries.list()) {
      const section = listed.get(registry.name);
      const previous = await this.find(registry.id);
      if (section === undefined || section === null) {
        if (previous?.source === 'file') await this.delete(registry, ctx);
        continue;
      }
      const dto = plainToInstance(GcSettingsDto, await withSecretFiles(section));
      const errors = await validate(dto, { whitelist: true, forbidNonWhitelisted: true });
      if (errors.length)
        throw new DomainError(
          'REGISTRIES_FILE_INVALID',
          `registries file ${e.path}: gc of "${registry.name}": ${errors.flatMap((err) => messages(err)).join('; ')}`,
          500,
          { path: e.path, registry: registry.name },
        );
      await this.apply(registry, previous, dto, ctx, 'file');
    }
  }

  private async apply(
    registry: RegistryEntity,
    previous: GcSettingsEntity | null,
    dto: GcSettingsDto,
    ctx: RequestContext,
    source: 'api' | 'file',
  ): Promise<GcSettingsView> {
    const executor = toExecutorConfig(dto.executor);
    // Secrets: omitted keeps the stored ones (when the type is unchanged), {} removes them.
    const keptSecrets =
      dto.secrets === undefined && previous && previous.executor.type === executor.type
        ? this.openSecrets(previous)
        : undefined;
    const secrets = secretsFor(executor.type, dto.secrets ?? keptSecrets);
    const fence = dto.fence ?? 'gateway';
    const cache = { type: dto.cache?.type ?? 'inmemory', ...dto.cache };
    await assertWorkable(executor, secrets, fence, cache.type);
    if (cache.type === 'redis' && !cache.addr)
      throw new ValidationError('cache.addr is required for a redis cache', { field: 'cache.addr' });
    const schedule = dto.schedule ?? null;
    const timezone = dto.scheduleTimezone ?? null;
    if (timezone !== null) assertTimezone(timezone);
    if (schedule) assertCron(schedule, timezone);
    const cachePassword =
      dto.cachePassword !== undefined
        ? dto.cachePassword || null
        : previous?.cacheSecretsSealed
          ? this.box.open(previous.cacheSecretsSealed)
          : null;

    const entity: GcSettingsEntity = Object.assign(new GcSettingsEntity(), {
      registryId: registry.id,
      executor,
      executorSecretsSealed: Object.keys(secrets).length ? this.box.seal(JSON.stringify(secrets)) : null,
      fence,
      cache,
      cacheSecretsSealed: cachePassword ? this.box.seal(cachePassword) : null,
      graceSeconds: dto.graceSeconds ?? 3600,
      maxGraceWaitSeconds: dto.maxGraceWaitSeconds ?? 3600,
      verification: dto.verification ?? 'sample',
      schedule,
      scheduleTimezone: timezone,
      scheduleDeleteUntagged: dto.scheduleDeleteUntagged ?? false,
      afterDeletions: dto.afterDeletions ?? false,
      afterDeletionsDelaySeconds: dto.afterDeletionsDelaySeconds ?? 300,
      source,
    });
    // The registries file is applied at every start of every replica: what did not change is not
    // written, nor audited again.
    if (previous && this.sameSettings(previous, entity, secrets, cachePassword)) {
      await this.syncSchedule(registry, previous);
      return this.toView(registry, previous);
    }
    const saved = await this.ds.transaction(async (m) => {
      const row = await m.getRepository(GcSettingsEntity).save(entity);
      await recordAudit(this.events, {
        action: previous ? 'gc.settings.updated' : 'gc.settings.created',
        ...auditBase(ctx, m),
        registry: registry.name,
        outcome: 'success',
        subject: { type: 'registry', id: registry.id },
        details: {
          executor: executor.type,
          fence,
          cache: cache.type,
          schedule,
          afterDeletions: entity.afterDeletions,
          secrets: Object.keys(secrets).sort(),
        },
      });
      return row;
    });
    // After the commit: the audit lock the transaction holds must not wait on Redis. The zone and the
    // pattern were checked before, so the scheduler takes them.
    await this.syncSchedule(registry, saved);
    return this.toView(registry, saved);
  }

  async remove(registryName: string, ctx: RequestContext): Promise<void> {
    const registry = await this.registries.get(registryName);
    if ((await this.find(registry.id))?.source === 'file') throw managedByFile(registry.name);
    await this.delete(registry, ctx);
  }

  private async delete(registry: RegistryEntity, ctx: RequestContext): Promise<void> {
    await this.ds.transaction(async (m) => {
      const { affected } = await m.getRepository(GcSettingsEntity).delete({ registryId: registry.id });
      if (!affected)
        throw new NotFoundError('GC_NOT_CONFIGURED', `registry "${registry.name}" has no GC settings`, {
          registry: registry.name,
        });
      await recordAudit(this.events, {
        action: 'gc.settings.deleted',
        ...auditBase(ctx, m),
        registry: registry.name,
        outcome: 'success',
        subject: { type: 'registry', id: registry.id },
      });
    });
    await this.queue.removeJobScheduler(scheduleJobId(registry.id));
  }

  /** The registry's schedule as a BullMQ job scheduler: one firing across all workers and replicas. */
  async syncSchedule(registry: RegistryEntity, s: GcSettingsEntity | null): Promise<void> {
    const id = scheduleJobId(registry.id);
    if (!s?.schedule) {
      await this.queue.removeJobScheduler(id);
      return;
    }
    await this.queue.upsertJobScheduler(
      id,
      { pattern: s.schedule, tz: s.scheduleTimezone ?? 'UTC' },
      {
        name: Jobs.gcScheduled,
        data: { registryId: registry.id } satisfies GcRegistryPayload,
        opts: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
      },
    );
  }

  /** Brings every registry's job scheduler in line with the database (workers do it when they start). */
  async reconcileSchedules(): Promise<void> {
    const all = await this.ds.getRepository(GcSettingsEntity).find();
    const byId = new Map(all.map((s) => [s.registryId, s]));
    for (const registry of await this.registries.list())
      await this.syncSchedule(registry, byId.get(registry.id) ?? null).catch((err: Error) =>
        this.logger.warn(`GC schedule of "${registry.name}" not applied: ${err.message}`),
      );
    for (const scheduler of await this.queue.getJobSchedulers()) {
      const registryId = scheduler.key.replace(/^gc-schedule-/, '');
      if (scheduler.key.startsWith('gc-schedule-') && !byId.get(registryId)?.schedule)
        await this.queue.removeJobScheduler(scheduler.key);
    }
  }

  executorFor(s: GcSettingsEntity): Promise<GcExecutor> {
    return createExecutor(s.executor, this.openSecrets(s));
  }

  cachePassword(s: GcSettingsEntity): string | undefined {
    return s.cacheSecretsSealed ? this.box.open(s.cacheSecretsSealed) : undefined;
  }

  private sameSettings(
    previous: GcSettingsEntity,
    next: GcSettingsEntity,
    secrets: GcExecutorSecrets,
    cachePassword: string | null,
  ): boolean {
    const plain = (e: GcSettingsEntity) =>
      canonical({
        executor: e.executor,
        fence: e.fence,
        cache: e.cache,
        graceSeconds: e.graceSeconds,
        maxGraceWaitSeconds: e.maxGraceWaitSeconds,
        verification: e.verification,
        schedule: e.schedule,
        scheduleTimezone: e.scheduleTimezone,
        scheduleDeleteUntagged: e.scheduleDeleteUntagged,
        afterDeletions: e.afterDeletions,
        afterDeletionsDelaySeconds: e.afterDeletionsDelaySeconds,
        source: e.source,
      });
    return (
      plain(previous) === plain(next) &&
      canonical(this.openSecrets(previous)) === canonical(secrets) &&
      (previous.cacheSecretsSealed ? this.box.open(previous.cacheSecretsSealed) : null) === cachePassword
    );
  }

  private openSecrets(s: GcSettingsEntity): GcExecutorSecrets {
    return s.executorSecretsSealed
      ? (JSON.parse(this.box.open(s.executorSecretsSealed)) as GcExecutorSecrets)
      : {};
  }

  private toView(registry: RegistryEntity, s: GcSettingsEntity): GcSettingsView {
    return {
      registry: registry.name,
      executor: s.executor as unknown as GcExecutorDto,
      secrets: secretsState(this.openSecrets(s)),
      capabilities: executorCapabilities(s.executor),
      fence: s.fence,
      cache: s.cache,
      hasCachePassword: !!s.cacheSecretsSealed,
      graceSeconds: s.graceSeconds,
      maxGraceWaitSeconds: s.maxGraceWaitSeconds,
      verification: s.verification,
      schedule: s.schedule,
      scheduleTimezone: s.scheduleTimezone,
      scheduleDeleteUntagged: s.scheduleDeleteUntagged,
      afterDeletions: s.afterDeletions,
      afterDeletionsDelaySeconds: s.afterDeletionsDelaySeconds,
      source: s.source,
    };
  }
}

/**
 * Refuses settings a run could not carry out: a fence or cache clearing the executor cannot do, or an
 * executor that cannot even be built (missing credentials, no pinned host key).
 */
export async function assertWorkable(
  executor: GcExecutorConfig,
  secrets: GcExecutorSecrets,
  fence: string,
  cache: string,
): Promise<void> {
  void (await createExecutor(executor, secrets)).close();
  const can = executorCapabilities(executor);
  const refuse = (what: string) =>
    new DomainError('FENCE_UNSUPPORTED', `the ${executor.type} executor cannot ${what}`, 400, {
      executor: executor.type,
      fence,
      cache,
      capabilities: can,
    });
  if (fence === 'readonly' && !can.readOnly)
    throw refuse('restart the registry in read-only mode (fence readonly)');
  if (fence === 'stop' && !can.stop) throw refuse('stop and start the registry (fence stop)');
  // An in-memory cache is emptied by a restart; with fence stop, the start after the run does it.
  if (cache === 'inmemory' && fence !== 'stop' && !can.restart)
    throw refuse(
      'restart the registry, which an in-memory blob descriptor cache needs after GC (or use fence stop, or a redis cache)',
    );
}

/** JSON with keys sorted at every level, so jsonb's reordering does not count as a change. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_key, value: unknown) =>
    value && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(
          Object.entries(value as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)),
        )
      : value,
  );
}

function managedByFile(registry: string): DomainError {
  return new DomainError(
    'GC_SETTINGS_MANAGED_BY_FILE',
    `the GC settings of "${registry}" come from the registries file; change them there`,
    409,
    { registry },
  );
}

function messages(e: ClassValidatorError, parent = ''): string[] {
  const own = Object.values(e.constraints ?? {}).map((m) => `${parent}${m}`);
  return own.concat((e.children ?? []).flatMap((c) => messages(c, `${parent}${e.property}.`)));
}

/** `secrets.privateKeyFile: /run/secrets/gc_key` instead of the key itself, for every secret. */
async function withSecretFiles(section: unknown): Promise<unknown> {
  if (typeof section !== 'object' || section === null) return section;
  const out = { ...(section as Record<string, unknown>) };
  const read = async (o: Record<string, unknown>) => {
    for (const key of Object.keys(o)) {
      if (!key.endsWith('File') || typeof o[key] !== 'string') continue;
      o[key.slice(0, -'File'.length)] = (await readFile(o[key] as string, 'utf8')).trim();
      delete o[key];
    }
  };
  if (typeof out.secrets === 'object' && out.secrets !== null) {
    out.secrets = { ...(out.secrets as Record<string, unknown>) };
    await read(out.secrets as Record<string, unknown>);
  }
  if (typeof out.cachePasswordFile === 'string') {
    out.cachePassword = (await readFile(out.cachePasswordFile, 'utf8')).trim();
    delete out.cachePasswordFile;
  }
  return out;
}

/** The cron parser takes any zone name, and the job scheduler then fails on it. */
function assertTimezone(tz: string): void {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
  } catch {
    throw new ValidationError(
      `scheduleTimezone "${tz}" is not an IANA time zone (e.g. "Europe/Berlin", "UTC")`,
      {
        field: 'scheduleTimezone',
      },
    );
  }
}

function assertCron(pattern: string, tz: string | null): void {
  try {
    CronExpressionParser.parse(pattern, { tz: tz ?? 'UTC' });
  } catch (err) {
    throw new ValidationError(`schedule is not a valid cron pattern: ${(err as Error).message}`, {
      field: 'schedule',
    });
  }
}
