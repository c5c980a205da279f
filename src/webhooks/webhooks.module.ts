import { Module, OnModuleInit, Provider } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import { AppConfig } from '../config/app-config.js';
import { RegistriesModule } from '../registries/registries.module.js';
import { RegistryEventsController } from './registry-events.controller.js';
import {
  REGISTRY_EVENTS_MEDIA_TYPE,
  RegistryEventsService,
  UnparsableBody,
} from './registry-events.service.js';
import { WebhookDeliveryProcessor } from './webhook-delivery.processor.js';
import { WebhookOutbox } from './webhook-outbox.listener.js';
import { WebhookQueue } from './webhook-queue.js';
import { WebhookSender } from './webhook-sender.js';
import { TargetPolicy } from './webhook-target.js';
import { WebhooksController } from './webhooks.controller.js';
import { WebhooksResolver } from './webhooks.resolver.js';
import { WebhooksService } from './webhooks.service.js';

// One event is a few hundred bytes; distribution 2.8 sends one per request.
const EVENTS_BODY_LIMIT = 1024 * 1024;

/** Both processes record deliveries in the transactions of the changes they report. */
const outbox: Provider[] = [
  WebhookQueue,
  WebhookOutbox,
  {
    provide: TargetPolicy,
    inject: [AppConfig],
    useFactory: (config: AppConfig) => new TargetPolicy(config.webhooks),
  },
];

/**
 * API side: subscriptions, deliveries and redelivery (REST and GraphQL), the outbox for the changes the
 * API makes, and the inbound registry notifications.
 */
@Module({
  imports: [RegistriesModule],
  controllers: [RegistryEventsController, WebhooksController],
  providers: [RegistryEventsService, WebhooksService, WebhooksResolver, ...outbox],
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

/** Worker side: the outbox for the changes workers make, and the deliveries themselves. */
@Module({
  providers: [
    ...outbox,
    {
      provide: WebhookSender,
      inject: [TargetPolicy, AppConfig],
      useFactory: (policy: TargetPolicy, config: AppConfig) =>
        new WebhookSender(policy, config.webhooks.timeoutMs),
    },
    WebhookDeliveryProcessor,
  ],
})
export class WebhooksWorkerModule {}
