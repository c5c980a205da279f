import { createHash, timingSafeEqual } from 'node:crypto';
import { Controller, Get, Headers, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { PrometheusController } from '@willsoto/nestjs-prometheus';
import type { FastifyReply } from 'fastify';
import { UnauthenticatedError } from '../auth/auth-errors.js';
import { Public } from '../auth/auth.decorators.js';
import { AppConfig } from '../config/app-config.js';

const digest = (v: string) => createHash('sha256').update(v).digest();

/**
 * /metrics for Prometheus. Scrapers rarely speak OIDC, so it is outside the role model: public by
 * default (process and request metrics, registry names in labels), or behind METRICS_TOKEN, which
 * Prometheus sends with `authorization: {credentials: ...}` in its scrape config.
 */
@ApiExcludeController()
@Controller()
export class MetricsController extends PrometheusController {
  private readonly expected: Buffer | null;

  constructor(config: AppConfig) {
    super();
    this.expected = config.auth.metricsToken ? digest(config.auth.metricsToken) : null;
  }

  @Get()
  @Public('Prometheus scrapes; METRICS_TOKEN protects it when set')
  override async index(
    @Res({ passthrough: true }) response: FastifyReply,
    @Headers('authorization') authorization?: string,
  ): Promise<string> {
    if (this.expected) {
      const given = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '')?.[1];
      if (!given || !timingSafeEqual(digest(given), this.expected)) {
        void response.header('www-authenticate', 'Bearer realm="registry-gateway metrics"');
        throw new UnauthenticatedError(
          '/metrics needs the METRICS_TOKEN (Authorization: Bearer <token>)',
          'metrics',
        );
      }
    }
    return super.index(response);
  }
}
