import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { RequirePermission } from '../auth/auth.decorators.js';
import { ApiErrors } from '../common/api-errors.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import {
  CreateWebhookDto,
  DeliveryDetailView,
  DeliveryIdParam,
  DeliveryPage,
  DeliveryQueryDto,
  RotateSecretDto,
  UpdateWebhookDto,
  WebhookIdParam,
  WebhookList,
  WebhookView,
  WebhookWithSecretView,
} from './webhook.dto.js';
import { WebhooksService } from './webhooks.service.js';

@ApiTags('webhooks')
@Controller('api/v1/webhooks')
@RequirePermission('webhooks:manage')
export class WebhooksController {
  constructor(private readonly webhooks: WebhooksService) {}

  @Post()
  @ApiOperation({
    summary: 'Subscribe a URL to events',
    description:
      'Deliveries are POSTed as `{type, timestamp, data}`, signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`). The answer is the only place the secret appears. The URL must be http(s), without credentials, and not on a private, loopback, link-local or metadata address unless the configuration allows it (WEBHOOK_URL_INVALID, WEBHOOK_URL_FORBIDDEN).',
  })
  @ApiCreatedResponse({ type: WebhookWithSecretView })
  @ApiErrors({
    400: [
      'VALIDATION_FAILED',
      'WEBHOOK_URL_INVALID',
      'WEBHOOK_URL_FORBIDDEN',
      'WEBHOOK_EVENT_TYPE_INVALID',
      'WEBHOOK_SECRET_INVALID',
    ],
  })
  create(@Body() dto: CreateWebhookDto, @Ctx() ctx: RequestContext): Promise<WebhookWithSecretView> {
    return this.webhooks.create(dto, ctx);
  }

  @Get()
  @ApiOperation({ summary: 'Webhook subscriptions (never their secrets)' })
  @ApiOkResponse({ type: WebhookList })
  async list(): Promise<WebhookList> {
    return { items: await this.webhooks.list() };
  }

  @Get(':id')
  @ApiOkResponse({ type: WebhookView })
  @ApiErrors({ 400: ['VALIDATION_FAILED'], 404: ['WEBHOOK_NOT_FOUND'] })
  get(@Param() p: WebhookIdParam): Promise<WebhookView> {
    return this.webhooks.get(p.id);
  }

  @Patch(':id')
  @ApiOperation({
    summary: 'Change a subscription',
    description:
      'Deactivating pauses deliveries (those waiting are kept); activating sends them, in order, and so does a new URL (the oldest waiting delivery is retried at once). A subscription the gateway deactivated after a 410 Gone is activated the same way.',
  })
  @ApiOkResponse({ type: WebhookView })
  @ApiErrors({
    400: ['VALIDATION_FAILED', 'WEBHOOK_URL_INVALID', 'WEBHOOK_URL_FORBIDDEN', 'WEBHOOK_EVENT_TYPE_INVALID'],
    404: ['WEBHOOK_NOT_FOUND'],
  })
  update(
    @Param() p: WebhookIdParam,
    @Body() dto: UpdateWebhookDto,
    @Ctx() ctx: RequestContext,
  ): Promise<WebhookView> {
    return this.webhooks.update(p.id, dto, ctx);
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a subscription with its deliveries' })
  @ApiNoContentResponse()
  @ApiErrors({ 400: ['VALIDATION_FAILED'], 404: ['WEBHOOK_NOT_FOUND'] })
  async remove(@Param() p: WebhookIdParam, @Ctx() ctx: RequestContext): Promise<void> {
    await this.webhooks.remove(p.id, ctx);
  }

  @Post(':id/rotate-secret')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Replace the signing secret',
    description:
      'Answers the new secret, once. For `keepPreviousSeconds` (default one day) deliveries carry two signatures, one per secret, so the receiver can switch without losing one; pass 0 when the old secret leaked.',
  })
  @ApiOkResponse({ type: WebhookWithSecretView })
  @ApiErrors({ 400: ['VALIDATION_FAILED', 'WEBHOOK_SECRET_INVALID'], 404: ['WEBHOOK_NOT_FOUND'] })
  rotateSecret(
    @Param() p: WebhookIdParam,
    @Body() dto: RotateSecretDto,
    @Ctx() ctx: RequestContext,
  ): Promise<WebhookWithSecretView> {
    return this.webhooks.rotateSecret(p.id, dto, ctx);
  }

  @Get(':id/deliveries')
  @ApiOperation({ summary: 'The subscription’s deliveries, newest first (filter by status and event type)' })
  @ApiOkResponse({ type: DeliveryPage })
  @ApiErrors({ 400: ['VALIDATION_FAILED'], 404: ['WEBHOOK_NOT_FOUND'] })
  deliveries(@Param() p: WebhookIdParam, @Query() q: DeliveryQueryDto): Promise<DeliveryPage> {
    return this.webhooks.listDeliveries(p.id, q);
  }

  @Get(':id/deliveries/:deliveryId')
  @ApiOperation({
    summary: 'One delivery with its payload and every attempt (status, latency, answer, error)',
  })
  @ApiOkResponse({ type: DeliveryDetailView })
  @ApiErrors({ 400: ['VALIDATION_FAILED'], 404: ['WEBHOOK_DELIVERY_NOT_FOUND'] })
  delivery(@Param() p: DeliveryIdParam): Promise<DeliveryDetailView> {
    return this.webhooks.getDelivery(p.id, p.deliveryId);
  }

  @Post(':id/deliveries/:deliveryId/redeliver')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Send a delivery again',
    description:
      'Any delivery (dead, delivered or waiting) is queued again with the same `webhook-id` and a fresh attempt schedule; being older than the subscription’s waiting deliveries, it goes out first. 409 WEBHOOK_INACTIVE on an inactive subscription.',
  })
  @ApiAcceptedResponse({ type: DeliveryDetailView })
  @ApiErrors({
    400: ['VALIDATION_FAILED'],
    404: ['WEBHOOK_NOT_FOUND', 'WEBHOOK_DELIVERY_NOT_FOUND'],
    409: ['WEBHOOK_INACTIVE'],
  })
  redeliver(@Param() p: DeliveryIdParam, @Ctx() ctx: RequestContext): Promise<DeliveryDetailView> {
    return this.webhooks.redeliver(p.id, p.deliveryId, ctx);
  }
}
