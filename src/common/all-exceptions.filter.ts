import { ArgumentsHost, Catch, ExceptionFilter, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { GraphQLError } from 'graphql';
import { toErrorBody } from './error-body.js';

/** The one global filter: REST answers `{ error: {...} }`, GraphQL gets `extensions.code`. */
@Catch()
export class AllExceptionsFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  catch(exception: unknown, host: ArgumentsHost) {
    const { status, body, unexpected, lateValidation } = toErrorBody(exception);
    if (unexpected) {
      // With the request's id, which the client got in its answer: the one way from a 500 to its stack.
      const req = requestOf(host);
      const stack = exception instanceof Error ? (exception.stack ?? exception.message) : String(exception);
      // Its type, message and stack only: pino's err serializer would copy every property, a failed
      // query's `parameters` (the request's values) among them.
      const err = {
        type: exception instanceof Error ? exception.constructor.name : typeof exception,
        message: exception instanceof Error ? exception.message : String(exception),
        stack,
      };
      if (req?.log) req.log.error({ error: err }, `unexpected error: ${body.message}`);
      else this.logger.error(`${stack}${req?.id ? ` (requestId ${String(req.id)})` : ''}`);
    }
    // The client's fault, but a field reached the database unchecked. Its message may quote the value: not logged.
    else if (lateValidation)
      this.logger.warn(`input refused by the database (SQLSTATE ${lateValidation}), not by validation`);
    if ((host.getType() as string) === 'graphql') {
      return new GraphQLError(body.message, {
        extensions: { code: body.code, status, details: body.details },
      });
    }
    const ctx = host.switchToHttp();
    const reply = ctx.getResponse<FastifyReply>();
    const req = ctx.getRequest<FastifyRequest>();
    void reply
      .status(status)
      .header('content-type', 'application/json; charset=utf-8')
      .send({ error: { ...body, requestId: req?.id } });
  }
}

/** The request behind an HTTP call or a GraphQL operation ({ req } context, over WebSocket too). */
function requestOf(host: ArgumentsHost): Partial<Pick<FastifyRequest, 'id' | 'log'>> | undefined {
  if (host.getType() === 'http') return host.switchToHttp().getRequest<FastifyRequest>();
  if ((host.getType() as string) === 'graphql')
    return (host.getArgByIndex(2) as { req?: Partial<FastifyRequest> } | undefined)?.req;
  return undefined;
}
