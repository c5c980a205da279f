import { Injectable } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager, In, MoreThan, QueryFailedError } from 'typeorm';
import { auditBase, recordAudit } from '../audit/audit-event.js';
import { decodeListCursor, encodeListCursor, type CursorScope } from '../common/cursor.js';
import { ConflictError, NotFoundError, ValidationError } from '../common/domain-error.js';
import type { RequestContext } from '../common/request-context.js';
import { generateApiToken } from './api-token.js';
import {
  CreatedTokenView,
  CreateServiceAccountDto,
  CreateTokenDto,
  SERVICE_ACCOUNT_NAME_RE,
  ServiceAccountList,
  ServiceAccountQueryDto,
  ServiceAccountView,
  TokenView,
} from './auth.dto.js';
import { RoleBindingEntity, ServiceAccountEntity, ServiceAccountTokenEntity } from './auth.entity.js';

const MAX_TOKEN_LIFETIME_MS = 10 * 366 * 24 * 3600_000;

/** Service accounts and their API tokens. Every change is audited in its own transaction. */
@Injectable()
export class ServiceAccountsService {
  constructor(
    @InjectDataSource() private readonly ds: DataSource,
    private readonly events: EventEmitter2,
  ) {}

  async create(dto: CreateServiceAccountDto, ctx: RequestContext): Promise<ServiceAccountView> {
    const id = await this.ds.transaction(async (m) => {
      const account = m.getRepository(ServiceAccountEntity).create({
        name: dto.name,
        description: dto.description ?? null,
        ...createdBy(ctx),
      });
      try {
        await m.getRepository(ServiceAccountEntity).insert(account);
      } catch (err) {
        if (isUniqueViolation(err))
          throw new ConflictError('SERVICE_ACCOUNT_EXISTS', `service account "${dto.name}" already exists`, {
            name: dto.name,
          });
        throw err;
      }
      await recordAudit(this.events, {
        action: 'service_account.created',
        ...auditBase(ctx, m),
        outcome: 'success',
        subject: { type: 'service_account', id: account.id },
        details: { name: account.name, description: account.description },
      });
      return account.id;
    });
    return this.get(id);
  }

  /** A page of the accounts by name (unique: the cursor is the last name), each with its tokens. */
  async list(q: ServiceAccountQueryDto): Promise<ServiceAccountList> {
    const limit = q.limit ?? 50;
    // A cursor handed out before cursors named their list ({name}) could only come from this one.
    const after = decodeListCursor(q.cursor, ACCOUNTS, isNameCursor, (v) =>
      isNameCursor(v) ? v : undefined,
    );
    const rows = await this.ds.getRepository(ServiceAccountEntity).find({
      where: after ? { name: MoreThan(after.name) } : {},
      order: { name: 'ASC' },
      take: limit + 1,
    });
    const page = rows.slice(0, limit);
    const tokens = page.length
      ? await this.ds.getRepository(ServiceAccountTokenEntity).find({
          where: { serviceAccountId: In(page.map((a) => a.id)) },
          order: { createdAt: 'ASC' },
        })
      : [];
    return {
      items: page.map((a) =>
        accountView(
          a,
          tokens.filter((t) => t.serviceAccountId === a.id),
        ),
      ),
      nextCursor: rows.length > limit ? encodeListCursor(ACCOUNTS, { name: page[limit - 1].name }) : null,
    };
  }

  async get(id: string): Promise<ServiceAccountView> {
    const account = await this.find(this.ds.manager, id);
    const tokens = await this.ds
      .getRepository(ServiceAccountTokenEntity)
      .find({ where: { serviceAccountId: id }, order: { createdAt: 'ASC' } });
    return accountView(account, tokens);
  }

  /** Deletes the account, its tokens (they stop working at once) and its role bindings. */
  async remove(id: string, ctx: RequestContext): Promise<void> {
    await this.ds.transaction(async (m) => {
      const account = await this.find(m, id, true);
      const [{ active }] = (await m.query(
        `SELECT count(*)::int AS active FROM service_account_tokens
          WHERE service_account_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`,
        [id],
      )) as { active: number }[];
      const bindings = await m.getRepository(RoleBindingEntity).find({ where: { serviceAccountId: id } });
      await m.getRepository(ServiceAccountEntity).delete({ id });
      await recordAudit(this.events, {
        action: 'service_account.deleted',
        ...auditBase(ctx, m),
        outcome: 'success',
        subject: { type: 'service_account', id },
        details: {
          name: account.name,
          activeTokens: active,
          roleBindings: bindings.map((b) => ({
            id: b.id,
            role: b.role,
            registry: b.registry,
            repository: b.repository,
          })),
        },
      });
    });
  }

  async createToken(id: string, dto: CreateTokenDto, ctx: RequestContext): Promise<CreatedTokenView> {
    const expiresAt = expiryOf(dto);
    const issued = generateApiToken();
    const saved = await this.ds.transaction(async (m) => {
      const account = await this.find(m, id, true);
      const repo = m.getRepository(ServiceAccountTokenEntity);
      const token = repo.create({
        serviceAccountId: id,
        name: dto.name ?? null,
        tokenHash: issued.hash,
        tokenHint: issued.hint,
        expiresAt,
        ...createdBy(ctx),
      });
      await repo.insert(token);
      await recordAudit(this.events, {
        action: 'service_account.token.created',
        ...auditBase(ctx, m),
        outcome: 'success',
        subject: { type: 'api_token', id: token.id },
        details: {
          serviceAccount: { id, name: account.name },
          name: token.name,
          hint: token.tokenHint,
          expiresAt: expiresAt?.toISOString() ?? null,
        },
      });
      return repo.findOneByOrFail({ id: token.id });
    });
    return { ...tokenView(saved), token: issued.token };
  }

  /** Revokes a token at once; revoking it again changes nothing. */
  async revokeToken(id: string, tokenId: string, ctx: RequestContext): Promise<void> {
    await this.ds.transaction(async (m) => {
      const account = await this.find(m, id, true);
      const token = await m
        .getRepository(ServiceAccountTokenEntity)
        .findOneBy({ id: tokenId, serviceAccountId: id });
      if (!token)
        throw new NotFoundError('TOKEN_NOT_FOUND', `service account ${id} has no token ${tokenId}`, {
          id,
          tokenId,
        });
      if (token.revokedAt) return;
      await m.query('UPDATE service_account_tokens SET revoked_at = now() WHERE id = $1', [tokenId]);
      await recordAudit(this.events, {
        action: 'service_account.token.revoked',
        ...auditBase(ctx, m),
        outcome: 'success',
        subject: { type: 'api_token', id: tokenId },
        details: { serviceAccount: { id, name: account.name }, name: token.name, hint: token.tokenHint },
      });
    });
  }

  private async find(m: EntityManager, id: string, lock = false): Promise<ServiceAccountEntity> {
    const qb = m.getRepository(ServiceAccountEntity).createQueryBuilder('a').where('a.id = :id', { id });
    if (lock) qb.setLock('pessimistic_write');
    const found = await qb.getOne();
    if (!found) throw new NotFoundError('SERVICE_ACCOUNT_NOT_FOUND', `no service account ${id}`, { id });
    return found;
  }
}

function expiryOf(dto: CreateTokenDto): Date | null {
  if (dto.expiresAt !== undefined && dto.expiresInDays !== undefined)
    throw new ValidationError('give expiresAt or expiresInDays, not both', { field: 'expiresAt' });
  const at =
    dto.expiresAt !== undefined
      ? new Date(dto.expiresAt)
      : dto.expiresInDays !== undefined
        ? new Date(Date.now() + dto.expiresInDays * 24 * 3600_000)
        : null;
  if (at && at.getTime() <= Date.now())
    throw new ValidationError('expiresAt must be in the future', { field: 'expiresAt' });
  if (at && at.getTime() > Date.now() + MAX_TOKEN_LIFETIME_MS)
    throw new ValidationError('a token expires within 10 years', { field: 'expiresAt' });
  return at;
}

export function createdBy(ctx: RequestContext) {
  return {
    createdByType: ctx.actor.type,
    createdById: ctx.actor.id,
    createdByName: ctx.actor.name ?? null,
  };
}

export function isUniqueViolation(err: unknown): boolean {
  return (
    err instanceof QueryFailedError &&
    (err as QueryFailedError & { driverError?: { code?: string } }).driverError?.code === '23505'
  );
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

function tokenView(t: ServiceAccountTokenEntity): TokenView {
  const now = Date.now();
  return {
    id: t.id,
    name: t.name,
    hint: t.tokenHint,
    status: t.revokedAt ? 'revoked' : t.expiresAt && t.expiresAt.getTime() <= now ? 'expired' : 'active',
    createdAt: t.createdAt.toISOString(),
    expiresAt: iso(t.expiresAt),
    lastUsedAt: iso(t.lastUsedAt),
    revokedAt: iso(t.revokedAt),
    createdBy: { type: t.createdByType, id: t.createdById, name: t.createdByName },
  };
}

function accountView(a: ServiceAccountEntity, tokens: ServiceAccountTokenEntity[]): ServiceAccountView {
  return {
    id: a.id,
    name: a.name,
    description: a.description,
    createdAt: a.createdAt.toISOString(),
    createdBy: { type: a.createdByType, id: a.createdById, name: a.createdByName },
    tokens: tokens.map(tokenView),
  };
}

/** Service accounts by name: no filter. */
const ACCOUNTS: CursorScope = { list: 'service-accounts', order: 'asc' };

function isNameCursor(v: unknown): v is { name: string } {
  const name = (v as { name?: unknown } | null)?.name;
  return typeof name === 'string' && SERVICE_ACCOUNT_NAME_RE.test(name);
}
