import { Args, Mutation, Query, Resolver } from '@nestjs/graphql';
import { RequirePermission } from '../auth/auth.decorators.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { UuidArg } from '../common/uuid-ids.js';
import {
  CreateWebhookDto,
  DeliveryDetailView,
  DeliveryPage,
  RotateSecretDto,
  UpdateWebhookDto,
  WebhookDeliveriesArgs,
  WebhookView,
  WebhookWithSecretView,
} from './webhook.dto.js';
import { WebhooksService } from './webhooks.service.js';

/** The REST operations of /api/v1/webhooks, for GraphQL. All need webhooks:manage everywhere. */
@Resolver(() => WebhookView)
export class WebhooksResolver {
  constructor(private readonly service: WebhooksService) {}

  @Query(() => [WebhookView], {
    description: 'Webhook subscriptions, oldest first; secrets are never returned (needs webhooks:manage).',
  })
  @RequirePermission('webhooks:manage')
  webhooks(): Promise<WebhookView[]> {
    return this.service.list();
  }

  @Query(() => WebhookView, { description: 'One webhook subscription (needs webhooks:manage).' })
  @RequirePermission('webhooks:manage')
  webhook(
    @UuidArg('id', 'a webhook subscription id', { description: 'The subscription’s uuid' }) id: string,
  ): Promise<WebhookView> {
    return this.service.get(id);
  }

  @Query(() => DeliveryPage, {
    description:
      'A subscription’s deliveries, newest first, filtered by status (pending, succeeded, dead) and event type (needs webhooks:manage).',
  })
  @RequirePermission('webhooks:manage')
  webhookDeliveries(@Args() q: WebhookDeliveriesArgs): Promise<DeliveryPage> {
    return this.service.listDeliveries(q.webhookId, q);
  }

  @Query(() => DeliveryDetailView, {
    description: 'One delivery with its payload and every attempt (needs webhooks:manage).',
  })
  @RequirePermission('webhooks:manage')
  webhookDelivery(
    @UuidArg('webhookId', 'a webhook subscription id', { description: 'The subscription’s uuid' })
    webhookId: string,
    @UuidArg('deliveryId', 'a delivery id', { description: 'The delivery’s uuid (its webhook-id header)' })
    deliveryId: string,
  ): Promise<DeliveryDetailView> {
    return this.service.getDelivery(webhookId, deliveryId);
  }

  @Mutation(() => WebhookWithSecretView, {
    description:
      'Subscribe a URL to events (needs webhooks:manage); the answer carries the signing secret, the only time it is shown.',
  })
  @RequirePermission('webhooks:manage')
  createWebhook(
    @Args('input', { description: 'The subscription' }) input: CreateWebhookDto,
    @Ctx() ctx: RequestContext,
  ): Promise<WebhookWithSecretView> {
    return this.service.create(input, ctx);
  }

  @Mutation(() => WebhookView, {
    description: 'Change a subscription; activating one sends what waited, in order (needs webhooks:manage).',
  })
  @RequirePermission('webhooks:manage')
  updateWebhook(
    @UuidArg('id', 'a webhook subscription id', { description: 'The subscription’s uuid' }) id: string,
    @Args('input', { description: 'What to change' }) input: UpdateWebhookDto,
    @Ctx() ctx: RequestContext,
  ): Promise<WebhookView> {
    return this.service.update(id, input, ctx);
  }

  @Mutation(() => Boolean, {
    description: 'Delete a subscription with its deliveries (needs webhooks:manage).',
  })
  @RequirePermission('webhooks:manage')
  async deleteWebhook(
    @UuidArg('id', 'a webhook subscription id', { description: 'The subscription’s uuid' }) id: string,
    @Ctx() ctx: RequestContext,
  ): Promise<boolean> {
    await this.service.remove(id, ctx);
    return true;
  }

  @Mutation(() => WebhookWithSecretView, {
    description:
      'Replace the signing secret (needs webhooks:manage); the answer carries the new one, once, and the old one keeps signing for keepPreviousSeconds.',
  })
  @RequirePermission('webhooks:manage')
  rotateWebhookSecret(
    @UuidArg('id', 'a webhook subscription id', { description: 'The subscription’s uuid' }) id: string,
    @Args('input', {
      nullable: true,
      description: 'The new secret and overlap; both defaulted when left out',
    })
    input: RotateSecretDto,
    @Ctx() ctx: RequestContext,
  ): Promise<WebhookWithSecretView> {
    return this.service.rotateSecret(id, input ?? {}, ctx);
  }

  @Mutation(() => DeliveryDetailView, {
    description:
      'Send a delivery again with the same webhook-id and a fresh attempt schedule (needs webhooks:manage).',
  })
  @RequirePermission('webhooks:manage')
  redeliverWebhookDelivery(
    @UuidArg('webhookId', 'a webhook subscription id', { description: 'The subscription’s uuid' })
    webhookId: string,
    @UuidArg('deliveryId', 'a delivery id', { description: 'The delivery’s uuid (its webhook-id header)' })
    deliveryId: string,
    @Ctx() ctx: RequestContext,
  ): Promise<DeliveryDetailView> {
    return this.service.redeliver(webhookId, deliveryId, ctx);
  }
}
