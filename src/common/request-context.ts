import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import { GqlExecutionContext } from '@nestjs/graphql';
import type { FastifyRequest } from 'fastify';
import { isIP } from 'node:net';
import type { AuditActor } from '../audit/audit-event.js';
import { Access, ALLOW_ALL, DENY_ALL } from '../auth/access.js';
import type { Principal } from '../auth/principal.js';

/** Who asked, from where, under which request id: what every audited change records. */
export interface RequestContext {
  actor: AuditActor;
  sourceIp: string | null;
  requestId: string | null;
  /**
   * What the caller may do, for checks the guard cannot make (bulk items, stored records). Absent means
   * nothing: contexts built by hand (workers replaying a request) never authorize anything.
   */
  access?: Access;
}

/** The context of a process acting on its own (workers, schedules). */
export const SYSTEM_CONTEXT: RequestContext = {
  actor: { type: 'system', id: 'registry-gateway', name: 'registry-gateway' },
  sourceIp: null,
  requestId: null,
  access: ALLOW_ALL,
};

// Keyed by the Fastify request, which REST handlers and the GraphQL context share.
const principals = new WeakMap<object, Principal>();

/** Called by the auth guard once the caller is known. */
export function setRequestPrincipal(req: object, principal: Principal): void {
  principals.set(req, principal);
}

export function requestPrincipal(req: object): Principal | undefined {
  return principals.get(req);
}

/**
 * The authenticated principal is the actor; a request that reached a handler without one (a public
 * route) is anonymous and may do nothing. The address is the socket's (Fastify's `trustProxy` decides
 * whether X-Forwarded-For counts).
 */
export function requestContextOf(req: FastifyRequest): RequestContext {
  const ip = req.ip && isIP(req.ip) ? req.ip : null;
  const principal = principals.get(req);
  return {
    actor: principal
      ? { type: principal.type, id: principal.id, name: principal.name }
      : { type: 'anonymous', id: null, name: null },
    sourceIp: ip,
    requestId: String(req.id),
    access: principal?.access ?? DENY_ALL,
  };
}

/** The Fastify request of a REST handler or of a GraphQL resolver. */
export function requestOf(ctx: ExecutionContext): FastifyRequest {
  if (ctx.getType<string>() === 'graphql')
    return GqlExecutionContext.create(ctx).getContext<{ req: FastifyRequest }>().req;
  return ctx.switchToHttp().getRequest<FastifyRequest>();
}

export const Ctx = createParamDecorator((_: unknown, ctx: ExecutionContext): RequestContext =>
  requestContextOf(requestOf(ctx)),
);
