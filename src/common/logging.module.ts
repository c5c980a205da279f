import { Module } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import type { LoggerOptions } from 'pino';
import { AppConfig } from '../config/app-config.js';

/** One pino configuration for Nest's logger and Fastify's request log: JSON, secrets redacted. */
export function pinoOptions(config: AppConfig): LoggerOptions {
  return {
    level: config.log.level,
    base: { service: 'registry-gateway' },
    transport: config.log.pretty ? { target: 'pino-pretty', options: { singleLine: true } } : undefined,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'req.headers["x-registry-token"]',
        'res.headers["set-cookie"]',
        '*.password',
        '*.secret',
        '*.token',
      ],
      censor: '[redacted]',
    },
  };
}

/**
 * Nest's logger writes through pino. In the API, Fastify owns the request log (one line per request
 * with `requestId`, status and time; see createApiApp), and nestjs-pino reuses that logger.
 */
@Module({
  imports: [
    LoggerModule.forRootAsync({
      inject: [AppConfig],
      useFactory: (config: AppConfig) => ({ pinoHttp: pinoOptions(config), useExisting: true as const }),
    }),
  ],
})
export class LoggingModule {}
