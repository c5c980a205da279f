import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { toErrorBody } from '../common/error-body.js';
import { AppConfig } from '../config/app-config.js';
import { ForbiddenError, RateLimitedError, UnauthenticatedError } from './auth-errors.js';
import { Authenticator } from './authenticator.service.js';
import { RequestRateLimiter } from './rate-limiter.js';
import { RefusalReason, Refusals } from './refusals.js';

/** Where QueueBoardModule mounts the dashboard. */
export const QUEUE_BOARD_PATH = '/queues';

/**
 * The BullMQ dashboard is a Fastify plugin, not a Nest route, so the guard never sees it: this hook
 * gives it the same tokens and requires `queues:manage` (admins) everywhere, since the board can retry
 * and remove any job. Browsers cannot send a bearer header, so HTTP Basic with the token as password
 * (any user name) works too, and a 401 asks the browser for it.
 */
@Injectable()
export class QueueBoardAuth implements OnModuleInit {
  private readonly logger = new Logger('Auth');

  constructor(
    private readonly host: HttpAdapterHost,
    private readonly config: AppConfig,
    private readonly authenticator: Authenticator,
    private readonly limiter: RequestRateLimiter,
    private readonly refusals: Refusals,
  ) {}

  onModuleInit() {
    const fastify = this.host.httpAdapter?.getInstance<FastifyInstance>();
    if (!fastify || !this.config.bullBoard) return;
    fastify.addHook('onRequest', async (req, reply) => {
      const path = req.url.split('?')[0];
      if (path !== QUEUE_BOARD_PATH && !path.startsWith(`${QUEUE_BOARD_PATH}/`)) return;
      try {
        const principal = await this.authenticator.authenticate(asBearer(req.headers.authorization));
        await this.limiter.consume(principal);
        if (!principal.access.can('queues:manage')) throw new ForbiddenError('queues:manage');
      } catch (err) {
        return this.refuse(err, req, reply);
      }
    });
  }

  private refuse(err: unknown, req: FastifyRequest, reply: FastifyReply) {
    const { status, body } = toErrorBody(err);
    const reason: RefusalReason | null =
      err instanceof UnauthenticatedError
        ? 'unauthenticated'
        : err instanceof ForbiddenError
          ? 'forbidden'
          : err instanceof RateLimitedError
            ? 'rate_limited'
            : null;
    if (reason)
      this.refusals.record({
        reason,
        api: 'queues',
        operation: `${req.method} ${QUEUE_BOARD_PATH}`,
        permission: reason === 'forbidden' ? 'queues:manage' : undefined,
        cause: err instanceof UnauthenticatedError ? err.reason : undefined,
        requestId: String(req.id),
        sourceIp: req.ip,
      });
    else this.logger.error(`queue board authentication failed: ${(err as Error)?.message}`);
    if (err instanceof UnauthenticatedError)
      void reply.header('www-authenticate', 'Basic realm="registry-gateway queues", charset="UTF-8"');
    if (err instanceof RateLimitedError) void reply.header('retry-after', err.retryAfterSeconds);
    return reply
      .status(status)
      .header('content-type', 'application/json; charset=utf-8')
      .send({ error: { ...body, requestId: req.id } });
  }
}

/** `Basic base64(user:token)` becomes `Bearer token`; anything else is passed on as it is. */
function asBearer(header: string | undefined): string | undefined {
  const m = /^Basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i.exec(header ?? '');
  if (!m) return header;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : `Bearer ${decoded.slice(colon + 1)}`;
}
