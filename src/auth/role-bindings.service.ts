import { Injectable } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager } from 'typeorm';
import { auditBase, recordAudit } from '../audit/audit-event.js';
import { createdPage } from '../common/cursor.js';
import { ConflictError, NotFoundError, ValidationError } from '../common/domain-error.js';
import { checkRepositoryGlob } from '../common/glob-sql.js';
import type { RequestContext } from '../common/request-context.js';
import {
  CreateRoleBindingDto,
  RoleBindingList,
  RoleBindingQueryDto,
  RoleBindingView,
  UpdateRoleBindingDto,
} from './auth.dto.js';
import { BindingSubjectType, RoleBindingEntity, ServiceAccountEntity } from './auth.entity.js';
import { createdBy, isUniqueViolation } from './service-accounts.service.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Role bindings: a user, an OIDC group or a service account gets a role on a scope. All audited. */
@Injectable()
export class RoleBindingsService {
  constructor(
    @InjectDataSource() private readonly ds: DataSource,
    private readonly events: EventEmitter2,
  ) {}

  async create(dto: CreateRoleBindingDto, ctx: RequestContext): Promise<RoleBindingView> {
    checkScope(dto.registry ?? null, dto.repository ?? null);
    const id = await this.ds.transaction(async (m) => {
      const subject = await resolveSubject(m, dto.subject.type, dto.subject.id);
      const repo = m.getRepository(RoleBindingEntity);
      const binding = repo.create({
        subjectType: dto.subject.type,
        subject: subject.id,
        serviceAccountId: subject.type === 'service_account' ? subject.id : null,
        role: dto.role,
        registry: dto.registry ?? null,
        repository: dto.repository ?? null,
        description: dto.description ?? null,
        ...createdBy(ctx),
      });
      try {
        await repo.insert(binding);
      } catch (err) {
        if (isUniqueViolation(err))
          throw new ConflictError('ROLE_BINDING_EXISTS', 'the subject already has this role on this scope', {
            subject: dto.subject,
            role: dto.role,
            registry: dto.registry ?? null,
            repository: dto.repository ?? null,
          });
        throw err;
      }
      await recordAudit(this.events, {
        action: 'role_binding.created',
        ...auditBase(ctx, m),
        registry: binding.registry,
        outcome: 'success',
        subject: { type: 'role_binding', id: binding.id },
        details: describe(binding, subject.name),
      });
      return binding.id;
    });
    return this.get(id);
  }

  /** A page of the bindings, oldest first. */
  async list(q: RoleBindingQueryDto): Promise<RoleBindingList> {
    const qb = this.ds
      .getRepository(RoleBindingEntity)
      .createQueryBuilder('b')
      .leftJoinAndMapOne('b.account', ServiceAccountEntity, 'a', 'a.id = b.serviceAccountId');
    if (q.subjectType !== undefined) qb.andWhere('b.subjectType = :type', { type: q.subjectType });
    if (q.subject !== undefined) qb.andWhere('b.subject = :subject', { subject: q.subject });
    if (q.role !== undefined) qb.andWhere('b.role = :role', { role: q.role });
    if (q.registry !== undefined) qb.andWhere('b.registry = :registry', { registry: q.registry });
    const { items, nextCursor } = await createdPage(qb, 'b', {
      limit: q.limit ?? 50,
      cursor: q.cursor,
      scope: {
        list: 'role-bindings',
        order: 'asc',
        filter: { subjectType: q.subjectType, subject: q.subject, role: q.role, registry: q.registry },
      },
    });
    return { items: items.map((b) => bindingView(b, (b as WithAccount).account?.name ?? null)), nextCursor };
  }

  async get(id: string): Promise<RoleBindingView> {
    const b = await this.find(this.ds.manager, id);
    return bindingView(b, await accountName(this.ds.manager, b));
  }

  async update(id: string, dto: UpdateRoleBindingDto, ctx: RequestContext): Promise<RoleBindingView> {
    await this.ds.transaction(async (m) => {
      const b = await this.find(m, id, true);
      const before = describe(b, null);
      if (dto.role !== undefined) b.role = dto.role;
      if (dto.registry !== undefined) b.registry = dto.registry;
      if (dto.repository !== undefined) b.repository = dto.repository;
      // A binding moved to every registry cannot keep a repository glob.
      if (dto.registry === null && dto.repository === undefined) b.repository = null;
      if (dto.description !== undefined) b.description = dto.description;
      checkScope(b.registry, b.repository);
      b.updatedAt = new Date();
      try {
        await m.getRepository(RoleBindingEntity).save(b);
      } catch (err) {
        if (isUniqueViolation(err))
          throw new ConflictError('ROLE_BINDING_EXISTS', 'the subject already has this role on this scope', {
            role: b.role,
            registry: b.registry,
            repository: b.repository,
          });
        throw err;
      }
      await recordAudit(this.events, {
        action: 'role_binding.updated',
        ...auditBase(ctx, m),
        registry: b.registry,
        outcome: 'success',
        subject: { type: 'role_binding', id },
        details: { before, after: describe(b, await accountName(m, b)) },
      });
    });
    return this.get(id);
  }

  async remove(id: string, ctx: RequestContext): Promise<void> {
    await this.ds.transaction(async (m) => {
      const b = await this.find(m, id, true);
      const name = await accountName(m, b);
      await m.getRepository(RoleBindingEntity).delete({ id });
      await recordAudit(this.events, {
        action: 'role_binding.deleted',
        ...auditBase(ctx, m),
        registry: b.registry,
        outcome: 'success',
        subject: { type: 'role_binding', id },
        details: describe(b, name),
      });
    });
  }

  private async find(m: EntityManager, id: string, lock = false): Promise<RoleBindingEntity> {
    const qb = m.getRepository(RoleBindingEntity).createQueryBuilder('b').where('b.id = :id', { id });
    if (lock) qb.setLock('pessimistic_write');
    const found = await qb.getOne();
    if (!found) throw new NotFoundError('ROLE_BINDING_NOT_FOUND', `no role binding ${id}`, { id });
    return found;
  }
}

type WithAccount = RoleBindingEntity & { account?: ServiceAccountEntity | null };

function checkScope(registry: string | null, repository: string | null) {
  if (repository !== null && registry === null)
    throw new ValidationError('a repository glob needs a registry', { field: 'repository' });
  if (repository !== null) checkRepositoryGlob(repository);
}

/** Users and groups are whatever the identity provider says; service accounts must exist (id or name). */
async function resolveSubject(
  m: EntityManager,
  type: BindingSubjectType,
  given: string,
): Promise<{ type: BindingSubjectType; id: string; name: string | null }> {
  if (type !== 'service_account') return { type, id: given, name: null };
  const account = await m
    .getRepository(ServiceAccountEntity)
    .findOneBy(UUID_RE.test(given) ? { id: given.toLowerCase() } : { name: given });
  if (!account)
    throw new NotFoundError('SERVICE_ACCOUNT_NOT_FOUND', `no service account ${given}`, { id: given });
  return { type, id: account.id, name: account.name };
}

async function accountName(m: EntityManager, b: RoleBindingEntity): Promise<string | null> {
  if (!b.serviceAccountId) return null;
  return (await m.getRepository(ServiceAccountEntity).findOneBy({ id: b.serviceAccountId }))?.name ?? null;
}

function describe(b: RoleBindingEntity, name: string | null): Record<string, unknown> {
  return {
    subject: { type: b.subjectType, id: b.subject, ...(name ? { name } : {}) },
    role: b.role,
    registry: b.registry,
    repository: b.repository,
  };
}

function bindingView(b: RoleBindingEntity, name: string | null): RoleBindingView {
  return {
    id: b.id,
    subject: { type: b.subjectType, id: b.subject, name },
    role: b.role,
    registry: b.registry,
    repository: b.repository,
    description: b.description,
    createdAt: b.createdAt.toISOString(),
    updatedAt: b.updatedAt.toISOString(),
    createdBy: { type: b.createdByType, id: b.createdById, name: b.createdByName },
  };
}
