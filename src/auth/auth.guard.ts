import { CanActivate, ExecutionContext, Injectable, Logger } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { GqlExecutionContext } from '@nestjs/graphql';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { isIP } from 'node:net';
import { DomainError } from '../common/domain-error.js';
import { requestOf, setRequestPrincipal } from '../common/request-context.js';
import { ForbiddenError, RateLimitedError, UnauthenticatedError } from './auth-errors.js';
import { AUTH_DECLARATION, AuthDeclaration, PermissionScope } from './auth.decorators.js';
import { Authenticator } from './authenticator.service.js';
import type { Permission } from './permissions.js';
import type { Principal } from './principal.js';
import { RateLimitState, RequestRateLimiter } from './rate-limiter.js';
import { Refusals } from './refusals.js';
import { repositoryOfPath } from './scope.js';

type Api = 'rest' | 'graphql';

interface Session {
  principal: Principal;
  rate: RateLimitState | null;
}

export interface Target {
  registry?: string;
  repository?: string;
}

/**
 * The one guard of every REST route and GraphQL resolver (root fields and field resolvers alike):
 * authenticates once per HTTP request, spends one unit of the principal's rate budget, and checks the
 * permission the handler declares on the registry and repository it addresses. A handler that declares
 * nothing is denied to everyone (fail closed).
 */
@Injectable()
export class AuthGuard implements CanActivate {
  private readonly logger = new Logger('Auth');
  /** A GraphQL request runs the guard once per resolver; it authenticates (and is counted) once. */
  private readonly sessions = new WeakMap<object, Promise<Session>>();

  constructor(
    private readonly reflector: Reflector,
    private readonly authenticator: Authenticator,
    private readonly limiter: RequestRateLimiter,
    private readonly refusals: Refusals,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const declaration = this.reflector.getAllAndOverride<AuthDeclaration | undefined>(AUTH_DECLARATION, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (declaration?.kind === 'public') return true;
    const api: Api = context.getType<string>() === 'graphql' ? 'graphql' : 'rest';
    const req = requestOf(context);
    const reply = api === 'rest' ? context.switchToHttp().getResponse<FastifyReply>() : undefined;

    let session = this.sessions.get(req);
    if (!session) {
      session = this.establish(req, api, operationOf(context, req, api));
      this.sessions.set(req, session);
    }
    let principal: Principal;
    try {
      const s = await session;
      principal = s.principal;
      if (reply && s.rate) {
        void reply.header('ratelimit-limit', s.rate.limit);
        void reply.header('ratelimit-remaining', s.rate.remaining);
        void reply.header('ratelimit-reset', s.rate.resetSeconds);
      }
    } catch (err) {
      if (reply && err instanceof UnauthenticatedError)
        void reply.header(
          'www-authenticate',
          err.reason === 'missing'
            ? 'Bearer realm="registry-gateway"'
            : 'Bearer realm="registry-gateway", error="invalid_token"',
        );
      if (reply && err instanceof RateLimitedError) void reply.header('retry-after', err.retryAfterSeconds);
      throw err;
    }

    if (!declaration) {
      const operation = operationOf(context, req, api);
      this.logger.error(`${operation} declares no permission: denied to everyone until it does`);
      this.refusals.record({ reason: 'undeclared', api, operation, principal, requestId: String(req.id) });
      throw new DomainError(
        'FORBIDDEN',
        'this operation declares no permission, so it is denied (fail closed)',
        403,
        { permission: null },
      );
    }
    if (declaration.kind === 'authenticated') return true;

    const { permissions, scope } = declaration;
    const target = targetOf(scope, context, req, api);
    const access = principal.access;
    const allowed = permissions.some((p: Permission) =>
      scope.anyRepository || scope.checkedInHandler
        ? target.registry
          ? access.canInRegistry(p, target.registry)
          : access.canAnywhere(p)
        : access.can(p, target.registry, target.repository),
    );
    if (allowed) return true;
    this.refusals.record({
      reason: 'forbidden',
      api,
      operation: operationOf(context, req, api),
      permission: permissions[0],
      principal,
      ...target,
      requestId: String(req.id),
    });
    throw new ForbiddenError(permissions[0], target);
  }

  private async establish(req: FastifyRequest, api: Api, operation: string): Promise<Session> {
    let principal: Principal;
    try {
      principal = await this.authenticator.authenticate(req.headers.authorization);
    } catch (err) {
      if (!(err instanceof UnauthenticatedError)) throw err;
      const sourceIp = req.ip && isIP(req.ip) ? req.ip : null;
      const refusal = { api, operation, requestId: String(req.id), sourceIp };
      try {
        await this.limiter.failed(sourceIp);
      } catch (limited) {
        this.refusals.record({ ...refusal, reason: 'rate_limited', cause: `auth-failures (${err.reason})` });
        throw limited;
      }
      this.refusals.record({ ...refusal, reason: 'unauthenticated', cause: err.reason });
      throw err;
    }
    setRequestPrincipal(req, principal);
    try {
      return { principal, rate: await this.limiter.consume(principal) };
    } catch (err) {
      if (err instanceof RateLimitedError)
        this.refusals.record({
          reason: 'rate_limited',
          api,
          operation,
          principal,
          requestId: String(req.id),
        });
      throw err;
    }
  }
}

function operationOf(context: ExecutionContext, req: FastifyRequest, api: Api): string {
  if (api === 'graphql') {
    const info = GqlExecutionContext.create(context).getInfo<{
      parentType: { name: string };
      fieldName: string;
    }>();
    return `GraphQL ${info.parentType.name}.${info.fieldName}`;
  }
  return `${req.method} ${req.routeOptions?.url ?? req.url.split('?')[0]}`;
}

const text = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** The registry and repository a call addresses, from where its declaration says they are. */
export function targetOf(
  scope: PermissionScope,
  context: ExecutionContext,
  req: FastifyRequest,
  api: Api,
): Target {
  const gql = api === 'graphql' ? GqlExecutionContext.create(context) : null;
  const params = (gql ? gql.getArgs() : (req.params ?? {})) as Record<string, unknown>;
  const query = (api === 'rest' ? (req.query ?? {}) : {}) as Record<string, unknown>;
  const parent = (gql?.getRoot<Record<string, unknown> | undefined>() ?? {}) as Record<string, unknown>;

  const registry = scope.registryParam
    ? text(params[scope.registryParam])
    : scope.registryQuery
      ? text(query[scope.registryQuery])
      : scope.registryParent
        ? text(parent[scope.registryParent])
        : undefined;
  let repository: string | undefined;
  if (scope.repositoryParam === '*') {
    const raw = params['*'];
    const path = Array.isArray(raw) ? raw.join('/') : text(raw);
    // The route's method says which form the path has: DELETE addresses a tag or a manifest, GET reads.
    repository = path ? repositoryOfPath(path, req.method === 'DELETE' ? 'delete' : 'read') : undefined;
  } else if (scope.repositoryParam) repository = text(params[scope.repositoryParam]);
  else if (scope.repositoryQuery) repository = text(query[scope.repositoryQuery]);
  return { ...(registry ? { registry } : {}), ...(repository ? { repository } : {}) };
}
