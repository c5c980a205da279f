import { Module, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import { RegistriesModule } from '../registries/registries.module.js';
import { RegistryEventsController } from './registry-events.controller.js';
import {
  REGISTRY_EVENTS_MEDIA_TYPE,
  RegistryEventsService,
  UnparsableBody,
} from './registry-events.service.js';

// One event is a few hundred bytes; distribution 2.8 sends one per request.
const EVENTS_BODY_LIMIT = 1024 * 1024;

@Module({
  imports: [RegistriesModule],
  controllers: [RegistryEventsController],
  providers: [RegistryEventsService],
})
export class WebhooksModule implements OnModuleInit {
  constructor(private readonly adapterHost: HttpAdapterHost) {}

  /** Distribution posts JSON under its own media type, which Fastify would refuse with 415. */
  onModuleInit() {
    const fastify = this.adapterHost.httpAdapter?.getInstance<FastifyInstance>();
    if (!fastify?.addContentTypeParser || fastify.hasContentTypeParser(REGISTRY_EVENTS_MEDIA_TYPE)) return;
    const json = fastify.getDefaultJsonParser('error', 'error');
    fastify.addContentTypeParser(
      REGISTRY_EVENTS_MEDIA_TYPE,
      { parseAs: 'string', bodyLimit: EVENTS_BODY_LIMIT },
      (req, body, done) =>
        // A bad body becomes a marker instead of an error, so the token is checked before the body is.
        json(req, body as string, (err, value) => done(null, err ? new UnparsableBody(err.message) : value)),
    );
  }
}
