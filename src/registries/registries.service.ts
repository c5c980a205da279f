import { createHash, timingSafeEqual } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectRepository } from '@nestjs/typeorm';
import { EntityManager, QueryFailedError, Repository } from 'typeorm';
import { auditBase, recordAudit } from '../audit/audit-event.js';
import type { RequestContext } from '../common/request-context.js';
import { ConflictError, DomainError, NotFoundError, ValidationError } from '../common/domain-error.js';
import { SecretBox } from '../common/secret-box.js';
import { RegistryClient } from './client/registry-client.js';
import { connectionOf, RegistryClients } from './registry-clients.service.js';
import { CreateRegistryDto, REGISTRY_NAME_RE, RegistryView, UpdateRegistryDto } from './registry.dto.js';
import { DEFAULT_DELETE_CONCURRENCY, RegistryEntity, RegistrySource } from './registry.entity.js';
import { RegistryProber } from './registry-prober.service.js';

export class RegistryNotFoundError extends NotFoundError {
  constructor(name: string) {
    super('REGISTRY_NOT_FOUND', `registry "${name}" is not registered`, { registry: name });
  }
}

/** Registry records: CRUD, secrets sealing, probing, and the client for each. */
@Injectable()
export class RegistriesService {
  private readonly logger = new Logger(RegistriesService.name);

  constructor(
    @InjectRepository(RegistryEntity) private readonly repo: Repository<RegistryEntity>,
    private readonly secrets: SecretBox,
    private readonly clients: RegistryClients,
    private readonly prober: RegistryProber,
    private readonly events: EventEmitter2,
  ) {}

  list(): Promise<RegistryEntity[]> {
    return this.repo.find({ order: { name: 'ASC' } });
  }

  async get(name: string): Promise<RegistryEntity> {
    if (typeof name !== 'string' || !REGISTRY_NAME_RE.test(name))
      throw new RegistryNotFoundError(String(name).slice(0, 100));
    const found = await this.repo.findOneBy({ name });
    if (!found) throw new RegistryNotFoundError(name);
    return found;
  }

  /** The registry and its client in one call: what every catalog and delete operation needs. */
  async client(name: string): Promise<{ registry: RegistryEntity; client: RegistryClient }> {
    const registry = await this.get(name);
    return { registry, client: this.clients.for(registry) };
  }

  /** Registers a registry (audited as `registry.registered`), then probes it. */
  async create(
    dto: CreateRegistryDto,
    ctx: RequestContext,
    source: RegistrySource = 'api',
  ): Promise<RegistryEntity> {
    const entity = this.repo.create({ name: dto.name, source });
    this.apply(entity, dto);
    try {
      await this.repo.manager.transaction(async (m) => {
        await m.getRepository(RegistryEntity).insert(entity);
        await this.audit(m, ctx, 'registry.registered', entity, {
          url: entity.url,
          authType: entity.authType,
          source,
        });
      });
    } catch (err) {
      if (isUniqueViolation(err))
        throw new ConflictError('REGISTRY_EXISTS', `registry "${dto.name}" already exists`, {
          registry: dto.name,
        });
      throw err;
    }
    const saved = await this.get(dto.name);
    return this.probe(saved);
  }

  /** Changes a registry (audited as `registry.updated`, naming the fields that changed), re-probed when its connection changed. */
  async update(
    name: string,
    dto: UpdateRegistryDto,
    ctx: RequestContext,
    source: RegistrySource = 'api',
  ): Promise<RegistryEntity> {
    const entity = await this.get(name);
    if (entity.source === 'file' && source === 'api') throw managedByFile(name);
    const before = { ...entity };
    this.apply(entity, dto);
    entity.source = source;
    const changed = changedFields(before, entity);
    // The registries file is applied whole on every change of the file: a registry it did not change
    // is neither written nor audited.
    if (!changed.length) return entity;
    await this.repo.manager.transaction(async (m) => {
      await m.getRepository(RegistryEntity).save(entity);
      await this.audit(m, ctx, 'registry.updated', entity, {
        changed,
        ...(changed.includes('url') ? { url: { from: before.url, to: entity.url } } : {}),
        source,
      });
    });
    const saved = await this.get(name);
    // Delete settings and the events token are not part of the connection: no probe for them.
    return JSON.stringify(connectionOf(before as RegistryEntity)) === JSON.stringify(connectionOf(saved))
      ? saved
      : this.probe(saved);
  }

  /** Unregisters a registry (audited as `registry.unregistered`); nothing on the registry changes. */
  async remove(name: string, ctx: RequestContext, source: RegistrySource = 'api'): Promise<void> {
    const entity = await this.get(name);
    if (entity.source === 'file' && source === 'api') throw managedByFile(name);
    await this.repo.manager.transaction(async (m) => {
      await m.getRepository(RegistryEntity).delete({ id: entity.id });
      await this.audit(m, ctx, 'registry.unregistered', entity, { url: entity.url, source });
    });
    await this.clients.forget(entity.id);
  }

  private audit(
    m: EntityManager,
    ctx: RequestContext,
    action: string,
    entity: RegistryEntity,
    details: Record<string, unknown>,
  ) {
    return recordAudit(this.events, {
      action,
      ...auditBase(ctx, m),
      registry: entity.name,
      outcome: 'success',
      subject: { type: 'registry', id: entity.id },
      details,
    });
  }

  /** Probes the registry now and stores what it learned. */
  async probe(entity: RegistryEntity): Promise<RegistryEntity> {
    const probe = await this.prober.probe(this.clients.for(entity), entity.authType);
    // Plain UPDATE: the probe must not bump updated_at, which versions the client pool. Stored only if the
    // registry is still as it was read: a probe of the old URL or credentials (the scheduled probe, which
    // read every registry when it started) must not overwrite the one its change stored.
    await this.repo.query(
      `UPDATE registries SET probe = $1 WHERE id = $2 AND date_trunc('milliseconds', updated_at) = $3`,
      [JSON.stringify(probe), entity.id, entity.updatedAt],
    );
    entity.probe = probe;
    return entity;
  }

  toView(e: RegistryEntity): RegistryView {
    return {
      name: e.name,
      url: e.url,
      description: e.description,
      authType: e.authType,
      username: e.username,
      hasPassword: e.passwordSealed !== null,
      tlsInsecure: e.tlsInsecure,
      hasCaCert: e.tlsCaCert !== null,
      source: e.source,
      probe: e.probe,
      deletes: { concurrency: e.deleteConcurrency, ratePerSecond: e.deleteRatePerSecond },
      hasEventsToken: e.eventsTokenHash !== null,
      createdAt: e.createdAt,
      updatedAt: e.updatedAt,
    };
  }

  private apply(entity: RegistryEntity, dto: UpdateRegistryDto) {
    if (dto.url !== undefined) entity.url = normaliseUrl(dto.url);
    if (dto.description !== undefined) entity.description = dto.description || null;
    if (dto.auth !== undefined) {
      const { type, username, password } = dto.auth;
      if (type === 'none') {
        entity.authType = 'none';
        entity.username = null;
        entity.passwordSealed = null;
      } else {
        entity.authType = type;
        if (username !== undefined) entity.username = username || null;
        if (
          password !== undefined &&
          !(password && entity.passwordSealed && this.secrets.open(entity.passwordSealed) === password)
        ) {
          entity.passwordSealed = password ? this.secrets.seal(password) : null;
        }
        if (type === 'basic' && (!entity.username || !entity.passwordSealed)) {
          throw new ValidationError('basic auth needs a username and a password', { field: 'auth' });
        }
      }
    } else if (entity.authType === undefined) {
      entity.authType = 'none';
    }
    if (dto.tls !== undefined) {
      if (dto.tls.caCert !== undefined) entity.tlsCaCert = validCa(dto.tls.caCert);
      if (dto.tls.insecure !== undefined) entity.tlsInsecure = dto.tls.insecure;
    }
    if (dto.deletes) {
      const { concurrency, ratePerSecond } = dto.deletes;
      if (concurrency !== undefined) entity.deleteConcurrency = concurrency;
      if (ratePerSecond !== undefined) entity.deleteRatePerSecond = ratePerSecond;
    }
    if (dto.eventsToken !== undefined)
      entity.eventsTokenHash = dto.eventsToken ? hashEventsToken(dto.eventsToken) : null;
    entity.deleteConcurrency ??= DEFAULT_DELETE_CONCURRENCY;
    entity.deleteRatePerSecond ??= null;
    entity.eventsTokenHash ??= null;
    entity.tlsInsecure ??= false;
    entity.tlsCaCert ??= null;
    entity.description ??= null;
    entity.username ??= null;
    entity.passwordSealed ??= null;
  }
}

/** Registry fields an audit event names when they change (secrets by name only, never by value). */
const AUDITED_FIELDS: [keyof RegistryEntity, string][] = [
  ['url', 'url'],
  ['description', 'description'],
  ['authType', 'auth.type'],
  ['username', 'auth.username'],
  ['passwordSealed', 'auth.password'],
  ['tlsCaCert', 'tls.caCert'],
  ['tlsInsecure', 'tls.insecure'],
  ['deleteConcurrency', 'deletes.concurrency'],
  ['deleteRatePerSecond', 'deletes.ratePerSecond'],
  ['eventsTokenHash', 'eventsToken'],
  ['source', 'source'],
];

function changedFields(before: Partial<RegistryEntity>, after: RegistryEntity): string[] {
  return AUDITED_FIELDS.filter(([k]) => (before[k] ?? null) !== (after[k] ?? null)).map(([, n]) => n);
}

/**
 * Events tokens are high-entropy secrets chosen by the operator (24+ characters), so a plain sha256
 * is enough: there is nothing to brute-force that a slow hash would protect.
 */
export function hashEventsToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Constant-time check of a presented token against a stored hash; false when either is missing. */
export function eventsTokenMatches(storedHash: string | null, presented: string | null): boolean {
  // Hash and compare even when there is nothing to compare with, so the time taken tells nothing.
  const given = Buffer.from(hashEventsToken(presented ?? ''), 'hex');
  const stored =
    storedHash && /^[0-9a-f]{64}$/.test(storedHash) ? Buffer.from(storedHash, 'hex') : Buffer.alloc(32);
  const same = timingSafeEqual(stored, given);
  return same && storedHash !== null && !!presented;
}

function managedByFile(name: string): DomainError {
  return new ConflictError(
    'REGISTRY_MANAGED_BY_FILE',
    `registry "${name}" is managed by the registries file; change it there`,
    {
      registry: name,
    },
  );
}

export function normaliseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ValidationError('url must be an absolute http(s) URL', { field: 'url' });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ValidationError('url must use http or https', { field: 'url' });
  if (url.username || url.password) {
    throw new ValidationError('url must not contain credentials; use auth.username and auth.password', {
      field: 'url',
    });
  }
  if (url.search || url.hash)
    throw new ValidationError('url must not have a query or fragment', { field: 'url' });
  return url.toString().replace(/\/+$/, '').replace(/\/v2$/, '');
}

function validCa(pem: string): string | null {
  if (!pem) return null;
  if (!pem.includes('-----BEGIN CERTIFICATE-----'))
    throw new ValidationError('tls.caCert must be a PEM certificate bundle', { field: 'tls.caCert' });
  return pem;
}

function isUniqueViolation(err: unknown): boolean {
  return err instanceof QueryFailedError && (err.driverError as { code?: string })?.code === '23505';
}
