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
    if (unexpected)
      this.logger.error(
        exception instanceof Error ? (exception.stack ?? exception.message) : String(exception),
      );
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
