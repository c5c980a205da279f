import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ApolloDriver, ApolloDriverConfig } from '@nestjs/apollo';
import { DynamicModule, Module, ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GraphQLModule } from '@nestjs/graphql';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { LogController } from 'fastify';
import { PrometheusModule } from '@willsoto/nestjs-prometheus';
import { Logger } from 'nestjs-pino';
import { pino } from 'pino';
import { register } from 'prom-client';
import { AuditModule } from './audit/audit.module.js';
import { AuthModule } from './auth/auth.module.js';
import { CatalogModule } from './catalog/catalog.module.js';
import { AllExceptionsFilter } from './common/all-exceptions.filter.js';
import { ValidationError } from './common/domain-error.js';
import { graphiqlPage } from './common/graphiql.js';
import { graphqlLimitsPlugin } from './common/graphql-limits.js';
import { graphqlRequestIdPlugin } from './common/graphql-request-id.js';
import { graphqlContext, GraphqlWsTransport } from './common/graphql-transport.js';
import { describeRootTypes } from './common/graphql-types.js';
import { HttpMetrics } from './common/http-metrics.js';
import { pinoOptions } from './common/logging.module.js';
import { StoredGlobsCheck } from './common/stored-globs.check.js';
import { MetricsController } from './common/metrics.controller.js';
import { AppConfig } from './config/app-config.js';
import { NotificationsModule } from './database/notifications.js';
import { DeletionsModule } from './deletions/deletions.module.js';
import { GcModule } from './gc/gc.module.js';
import { HealthModule } from './health/health.module.js';
import { QueueBoardModule } from './queue/queue-board.module.js';
import { RegistriesFileModule, RegistriesModule } from './registries/registries.module.js';
import { WebhooksModule } from './webhooks/webhooks.module.js';
import { core } from './worker.module.js';

const REQUEST_ID = /^[\w.:-]{1,128}$/;
const QUIET_ROUTES = /^\/(health|metrics)(\/|$)/;

/** The HTTP API process: REST, GraphQL, OpenAPI, health and metrics. Consumes no jobs. */
@Module({})
export class AppModule {
  static forRoot(config: AppConfig): DynamicModule {
    const ws = new GraphqlWsTransport(config.graphql);
    return {
      module: AppModule,
      imports: [
        ...core(config),
        GraphQLModule.forRoot<ApolloDriverConfig>({
          driver: ApolloDriver,
          autoSchemaFile: true,
          sortSchema: true,
          path: '/graphql',
          playground: false,
          graphiql: false,
          introspection: true,
          includeStacktraceInErrorResponses: false,
          plugins: [graphiqlPage(), graphqlLimitsPlugin(config.graphql), graphqlRequestIdPlugin()],
          // One context shape, { req }, over HTTP and WebSocket (graphql-transport.ts).
          context: graphqlContext,
          subscriptions: { 'graphql-ws': ws.options() },
          transformSchema: (schema) => ws.captureSchema(describeRootTypes(schema)),
          // The auth guard must also run on field resolvers (a field can reach a registry), and their
          // errors get their codes like the root fields' (a bad cursor or limit is VALIDATION_FAILED).
          fieldResolverEnhancers: ['guards', 'filters'],
        }),
        PrometheusModule.register({
          path: '/metrics',
          // Registered once per process (prom-client's registry is global; tests start several APIs).
          defaultMetrics: { enabled: !register.getSingleMetric('process_cpu_user_seconds_total') },
          controller: MetricsController,
        }),
        NotificationsModule,
        AuthModule,
        HealthModule,
        ...(config.bullBoard ? [QueueBoardModule] : []),
        RegistriesModule,
        RegistriesFileModule,
        CatalogModule,
        DeletionsModule,
        GcModule,
        AuditModule,
        WebhooksModule,
      ],
      providers: [HttpMetrics, StoredGlobsCheck],
    };
  }
}

/**
 * Bodies are JSON, and only JSON: another media type is 415 UNSUPPORTED_MEDIA_TYPE saying so (Distribution's
 * event media type has its own parser, WebhooksModule). An empty body with `content-type: application/json`
 * is no body, as a client library sends it for a POST without one; a body that is not JSON is
 * VALIDATION_FAILED.
 */
function acceptJsonOnly(adapter: FastifyAdapter): void {
  const fastify = adapter.getInstance();
  fastify.removeContentTypeParser(['application/json', 'text/plain']);
  const json = fastify.getDefaultJsonParser('error', 'error');
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = body as string;
    if (text.trim() === '') return done(null, undefined);
    json(req, text, (err, value) =>
      err
        ? done(
            new ValidationError(`the body is not valid JSON: ${err.message}`, { field: 'body' }),
            undefined,
          )
        : done(null, value),
    );
  });
}

/** Builds the API application with everything main.ts and the e2e tests need. */
export async function createApiApp(config: AppConfig): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({
    loggerInstance: pino(pinoOptions(config)),
    logController: new LogController({
      requestIdLogLabel: 'requestId',
      // Probes and scrapes every few seconds would drown the request log.
      disableRequestLogging: (req) => QUIET_ROUTES.test(req.url),
    }),
    bodyLimit: 1024 * 1024,
    routerOptions: { maxParamLength: 2048 },
    genReqId: (req: IncomingMessage) => {
      const given = req.headers['x-request-id'];
      const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
      return id;
    },
  });
  adapter.getInstance().addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  acceptJsonOnly(adapter);
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config), adapter, {
    bufferLogs: true,
    // Nest would add a form parser: a JSON body sent by `curl -d` without its content type was then
    // read as one form field named after the whole body, and refused for fields it does not name.
    bodyParser: false,
  });
  app.useLogger(app.get(Logger));
  app.useGlobalPipes(new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true }));
  app.useGlobalFilters(new AllExceptionsFilter());
  app.enableShutdownHooks();
  const doc = new DocumentBuilder()
    .setTitle('Registry Gateway')
    .setDescription(
      'One API in front of many Docker/OCI registries: catalog, deletes, garbage collection, audit. Every call needs `Authorization: Bearer <token>` (an OIDC JWT, a service-account API token `rgw_…`, or GATEWAY_ADMIN_TOKEN) and the permission named under `x-permission`; /health, /docs and /metrics are public.',
    )
    .setVersion('1')
    .addBearerAuth()
    .build();
  SwaggerModule.setup('docs', app, () => SwaggerModule.createDocument(app, doc), {
    jsonDocumentUrl: 'docs/openapi.json',
  });
  await app.init();
  await app.getHttpAdapter().getInstance().ready();
  return app;
}
