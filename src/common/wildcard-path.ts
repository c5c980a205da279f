import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';

/**
 * The tail of a wildcard route (`@Get('*')`), which Fastify's router names `*`: what `@Param('*')` gives,
 * but left out of the OpenAPI document, where a parameter cannot be named `*`. The route documents it with
 * `@ApiParam({ name: 'path' })`, the name of its `{path}` in the document's path template.
 */
export const WildcardPath = createParamDecorator(
  (_: unknown, ctx: ExecutionContext): string | string[] | undefined =>
    ctx.switchToHttp().getRequest<FastifyRequest<{ Params: Record<string, string | string[]> }>>().params[
      '*'
    ],
);
