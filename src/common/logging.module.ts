import { Module } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import { AppConfig } from '../config/app-config.js';

const QUIET_ROUTES = /^\/(health|metrics)/;

/** JSON logs with the request id on every line; credentials are redacted wherever they appear. */
@Module({
  imports: [
    LoggerModule.forRootAsync({
      inject: [AppConfig],
      useFactory: (config: AppConfig) => ({
        pinoHttp: {
          level: config.log.level,
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
          autoLogging: { ignore: (req) => QUIET_ROUTES.test(req.url ?? '') },
          customProps: () => ({ service: 'registry-gateway' }),
          serializers: {
            req: (req: { id: string; method: string; url: string; remoteAddress?: string }) => ({
              id: req.id,
              method: req.method,
              url: req.url,
              remoteAddress: req.remoteAddress,
            }),
          },
        },
      }),
    }),
  ],
})
export class LoggingModule {}
