import {
  ArgsType,
  Field,
  GraphQLISODateTime,
  ID,
  InputType,
  Int,
  ObjectType,
  registerEnumType,
} from '@nestjs/graphql';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
} from 'class-validator';
import { GraphQLJSONObject } from 'graphql-scalars';
import { REGISTRY_NAME_RE } from '../auth/scope.js';
import { IsOmittable } from '../common/omittable.js';
import { IsUuidId } from '../common/uuid-ids.js';
import { WEBHOOK_EVENT_TYPES } from './webhook-events.js';
import type { WebhookDeliveryStatus } from './webhook.entity.js';

export const DELIVERY_STATUSES: WebhookDeliveryStatus[] = ['pending', 'succeeded', 'dead'];
/** DELIVERY_STATUSES as a GraphQL enum (the webhookDeliveries filter): the same values, named as they are. */
export const DeliveryStatusValue = Object.fromEntries(DELIVERY_STATUSES.map((s) => [s, s])) as {
  [S in WebhookDeliveryStatus]: S;
};
registerEnumType(DeliveryStatusValue, {
  name: 'WebhookDeliveryStatus',
  description: 'pending (waiting or retrying), succeeded or dead.',
  valuesMap: {
    pending: { description: 'Waiting to be sent, or to be retried.' },
    succeeded: { description: 'The receiver answered 2xx.' },
    dead: { description: 'Out of attempts; redeliverWebhookDelivery sends it again.' },
  },
});
const EVENT_TYPES_DOC = `Exact types (${WEBHOOK_EVENT_TYPES.join(', ')}), \`<prefix>.*\` wildcards (\`registry.*\`, \`deletion.*\`, \`gc.*\`) or \`*\`.`;

// --- input ---------------------------------------------------------------------------------------------

@InputType('CreateWebhookInput', { description: 'A new webhook subscription.' })
export class CreateWebhookDto {
  @ApiProperty({
    example: 'https://hooks.example.com/registry-gateway',
    description:
      'http or https; no credentials in the URL; private, loopback, link-local and metadata addresses are refused unless the configuration allows them',
  })
  @Field({ description: 'Where deliveries are POSTed (http or https, no credentials).' })
  @IsString()
  @MaxLength(2048)
  url: string;

  @ApiProperty({
    example: ['deletion.completed', 'deletion.failed', 'registry.*'],
    description: EVENT_TYPES_DOC,
  })
  @Field(() => [String], { description: EVENT_TYPES_DOC })
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(50)
  @IsString({ each: true })
  @MaxLength(100, { each: true })
  eventTypes: string[];

  @ApiPropertyOptional({ example: 'prod-eu', description: 'Only events of this registry' })
  @Field({ nullable: true, description: 'Only events of this registry (by name).' })
  @IsOptional()
  @IsString()
  @Matches(REGISTRY_NAME_RE, { message: 'registry must be a registry name' })
  registry?: string;

  @ApiPropertyOptional({
    example: 'team-a/**',
    description:
      'Only events about matching repositories (picomatch glob, as in role bindings); gc.* events concern every repository of their registry and always pass',
  })
  @Field({ nullable: true, description: 'Only events about repositories matching this glob (`team-a/**`).' })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  repository?: string;

  @ApiPropertyOptional({
    example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    description:
      'Standard Webhooks secret (`whsec_` + base64 of 24-64 bytes). Leave it out to have one generated; it is returned once, in this answer',
  })
  @Field({ nullable: true, description: 'A `whsec_…` secret; generated when left out, returned once.' })
  @IsOmittable()
  @IsString()
  @MaxLength(200)
  secret?: string;

  @ApiPropertyOptional({ default: true })
  @Field({ nullable: true, description: 'Inactive subscriptions receive nothing (default true).' })
  @IsOmittable()
  @IsBoolean()
  active?: boolean;

  @ApiPropertyOptional({ example: 'Slack bridge of the platform team' })
  @Field({ nullable: true, description: 'Free text for people.' })
  @IsOptional()
  @IsString()
  @MaxLength(1000)
  description?: string;
}

@InputType('UpdateWebhookInput', {
  description:
    'Fields to change; `null` clears registry, repository or description (and is refused elsewhere).',
})
export class UpdateWebhookDto {
  @ApiPropertyOptional()
  @Field({ nullable: true, description: 'Where deliveries are POSTed (http or https, no credentials).' })
  @IsOmittable()
  @IsString()
  @MaxLength(2048)
  url?: string;

  @ApiPropertyOptional({ description: EVENT_TYPES_DOC })
  @Field(() => [String], { nullable: true, description: EVENT_TYPES_DOC })
  @IsOmittable()
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(50)
  @IsString({ each: true })
  @MaxLength(100, { each: true })
  eventTypes?: string[];

  @ApiPropertyOptional({ nullable: true, type: String })
  @Field(() => String, {
    nullable: true,
    description: 'Only events of this registry (by name); null: every registry.',
  })
  @IsOptional()
  @IsString()
  @Matches(REGISTRY_NAME_RE, { message: 'registry must be a registry name' })
  registry?: string | null;

  @ApiPropertyOptional({ nullable: true, type: String })
  @Field(() => String, {
    nullable: true,
    description: 'Only events about repositories matching this glob; null: every repository.',
  })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  repository?: string | null;

  @ApiPropertyOptional({
    description:
      'Deactivating pauses deliveries (waiting ones are kept); activating sends what waited, in order',
  })
  @Field({ nullable: true, description: 'Deactivating pauses deliveries; activating resumes them in order.' })
  @IsOmittable()
  @IsBoolean()
  active?: boolean;

  @ApiPropertyOptional({ nullable: true, type: String })
  @Field(() => String, { nullable: true, description: 'Free text for people; null removes it.' })
  @IsOptional()
  @IsString()
  @MaxLength(1000)
  description?: string | null;
}

@InputType('RotateWebhookSecretInput', { description: 'How to replace the signing secret.' })
export class RotateSecretDto {
  @ApiPropertyOptional({ description: 'The new `whsec_…` secret; generated when left out' })
  @Field({ nullable: true, description: 'The new `whsec_…` secret; generated when left out.' })
  @IsOmittable()
  @IsString()
  @MaxLength(200)
  secret?: string;

  @ApiPropertyOptional({
    default: 86400,
    minimum: 0,
    maximum: 604800,
    description:
      'How long deliveries also carry a signature made with the old secret, so receivers can switch without losing one; 0 drops it at once (a leaked secret)',
  })
  @Field(() => Int, {
    nullable: true,
    description: 'Seconds the old secret keeps signing too (default 86400; 0 after a leak).',
  })
  @IsOmittable()
  @Type(() => Number)
  @IsInt()
  @Min(0)
  @Max(604800)
  keepPreviousSeconds?: number;
}

@ArgsType()
export class DeliveryQueryDto {
  @ApiPropertyOptional({ enum: DELIVERY_STATUSES })
  @Field(() => DeliveryStatusValue, { nullable: true, description: 'Only deliveries in this status' })
  @IsOptional()
  @IsIn(DELIVERY_STATUSES)
  status?: WebhookDeliveryStatus;

  @ApiPropertyOptional({ example: 'deletion.completed' })
  @Field({
    nullable: true,
    description: 'Only deliveries of this event type (exact, e.g. deletion.completed)',
  })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  eventType?: string;

  @ApiPropertyOptional({ minimum: 1, maximum: 200, default: 50 })
  @Field(() => Int, { nullable: true, description: '1 to 200, default 50' })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(200)
  limit?: number;

  @ApiPropertyOptional()
  @Field({ nullable: true, description: 'nextCursor of the previous page' })
  @IsOptional()
  @IsString()
  @MaxLength(2048)
  cursor?: string;
}

@ArgsType()
export class WebhookDeliveriesArgs extends DeliveryQueryDto {
  @Field(() => ID, { description: 'The subscription.' })
  @IsUuidId('a webhook subscription id')
  webhookId: string;
}

export class WebhookIdParam {
  @ApiProperty({ format: 'uuid', description: 'The webhook subscription' })
  @IsUuidId('a webhook subscription id')
  id: string;
}

export class DeliveryIdParam extends WebhookIdParam {
  @ApiProperty({ format: 'uuid', description: 'The delivery' })
  @IsUuidId('a delivery id')
  deliveryId: string;
}

// --- output --------------------------------------------------------------------------------------------

@ObjectType('WebhookActor', { description: 'Who created a subscription.' })
export class WebhookActorView {
  @ApiProperty() @Field({ description: 'user, service, system or anonymous (as ActorType).' }) type: string;
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, { nullable: true, description: 'Stable id: OIDC sub, service account id, …' })
  id: string | null;
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, { nullable: true, description: 'Display name at the time.' })
  name: string | null;
}

@ObjectType('WebhookSubscription', {
  description: 'Where the gateway POSTs signed events, and which ones. The secret is never returned here.',
})
export class WebhookView {
  @ApiProperty() @Field(() => ID, { description: 'The subscription’s uuid.' }) id: string;
  @ApiProperty() @Field({ description: 'Where deliveries are POSTed.' }) url: string;
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, { nullable: true, description: 'Free text for people; null when none.' })
  description: string | null;
  @ApiProperty({ example: ['deletion.*', 'gc.failed'] })
  @Field(() => [String], { description: 'Event types and wildcards it receives.' })
  eventTypes: string[];
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, { nullable: true, description: 'Only events of this registry.' })
  registry: string | null;
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, { nullable: true, description: 'Only events about repositories matching this glob.' })
  repository: string | null;
  @ApiProperty()
  @Field({ description: 'It gets events; an inactive one gets no new deliveries and holds those waiting.' })
  active: boolean;
  @ApiPropertyOptional({
    type: String,
    nullable: true,
    description: '`gone`: the receiver answered 410 and the subscription was deactivated',
  })
  @Field(() => String, { nullable: true, description: 'Why the gateway deactivated it (`gone`: a 410).' })
  deactivatedReason: string | null;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => GraphQLISODateTime, {
    nullable: true,
    description: 'When the signing secret was last replaced; null if never.',
  })
  secretRotatedAt: Date | null;
  @ApiPropertyOptional({
    nullable: true,
    description: 'Until then, deliveries also carry a signature made with the previous secret',
  })
  @Field(() => GraphQLISODateTime, {
    nullable: true,
    description: 'Until then deliveries are signed with the previous secret too.',
  })
  previousSecretExpiresAt: Date | null;
  @ApiProperty({ description: 'Deliveries waiting to be sent (or retried)' })
  @Field(() => Int, { description: 'Deliveries waiting to be sent or retried.' })
  pendingDeliveries: number;
  @ApiProperty({ description: 'Deliveries that ran out of attempts' })
  @Field(() => Int, { description: 'Dead-lettered deliveries (out of attempts).' })
  deadDeliveries: number;
  @ApiProperty({ type: WebhookActorView })
  @Field(() => WebhookActorView, { description: 'Who created it.' })
  createdBy: WebhookActorView;
  @ApiProperty() @Field(() => GraphQLISODateTime, { description: 'When it was created.' }) createdAt: Date;
  @ApiProperty() @Field(() => GraphQLISODateTime, { description: 'When it last changed.' }) updatedAt: Date;
}

@ObjectType('WebhookSubscriptionWithSecret', {
  description: 'A subscription with its signing secret: only the answer that creates or rotates it.',
})
export class WebhookWithSecretView extends WebhookView {
  @ApiProperty({
    example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    description: 'The signing secret. Shown once: store it with the receiver',
  })
  @Field({ description: 'The signing secret; shown once.' })
  secret: string;
}

@ObjectType('WebhookSubscriptionList')
export class WebhookList {
  @ApiProperty({ type: [WebhookView] }) @Field(() => [WebhookView]) items: WebhookView[];
}

@ObjectType('WebhookDeliveryError', { description: 'Why a delivery attempt failed.' })
export class DeliveryErrorView {
  @ApiProperty({ example: 'WEBHOOK_HTTP_STATUS' })
  @Field({ description: 'Stable code, e.g. WEBHOOK_HTTP_STATUS.' })
  code: string;
  @ApiProperty() @Field({ description: 'What happened, for people.' }) message: string;
}

@ObjectType('WebhookDeliveryAttempt', { description: 'One POST to the receiver.' })
export class AttemptView {
  @ApiProperty()
  @Field(() => Int, { description: 'Number of the attempt over the delivery’s life, from 1.' })
  attempt: number;
  @ApiProperty({ description: '0: the original schedule; n: after the n-th manual redelivery' })
  @Field(() => Int, { description: '0: the original schedule; n: after the n-th manual redelivery.' })
  redelivery: number;
  @ApiProperty() @Field(() => GraphQLISODateTime, { description: 'When the POST started.' }) startedAt: Date;
  @ApiProperty()
  @Field(() => Int, { description: 'Milliseconds until the answer (or the failure).' })
  durationMs: number;
  @ApiPropertyOptional({ type: Number, nullable: true })
  @Field(() => Int, { nullable: true, description: 'HTTP status; null when no answer came.' })
  statusCode: number | null;
  @ApiPropertyOptional({ type: String, nullable: true, description: 'The first 4 KiB of the answer' })
  @Field(() => String, { nullable: true, description: 'The first 4 KiB of the answer.' })
  responseBody: string | null;
  @ApiProperty()
  @Field({ description: 'The answer was longer than the 4 KiB kept.' })
  responseTruncated: boolean;
  @ApiPropertyOptional({ type: DeliveryErrorView, nullable: true })
  @Field(() => DeliveryErrorView, { nullable: true, description: 'Why it failed; null when it succeeded.' })
  error: DeliveryErrorView | null;
  @ApiProperty() @Field({ description: 'The receiver answered 2xx.' }) succeeded: boolean;
}

@ObjectType('WebhookDelivery', {
  description:
    'One event for one subscription. Its id is the `webhook-id` header, the same on every attempt and redelivery.',
})
export class DeliveryView {
  @ApiProperty({ description: 'Also the `webhook-id` header' })
  @Field(() => ID, { description: 'Also the `webhook-id` header.' })
  id: string;
  @ApiProperty() @Field(() => ID, { description: 'The subscription’s uuid.' }) webhookId: string;
  @ApiProperty({ example: 'deletion.completed' })
  @Field({ description: 'The event type, e.g. deletion.completed.' })
  eventType: string;
  @ApiProperty({ enum: DELIVERY_STATUSES })
  @Field(() => String, { description: 'pending (waiting or retrying), succeeded or dead' })
  status: WebhookDeliveryStatus;
  @ApiProperty()
  @Field(() => Int, { description: 'POSTs made so far, over every redelivery.' })
  attemptCount: number;
  @ApiProperty()
  @Field(() => Int, { description: 'Times it was sent again by hand (redeliverWebhookDelivery).' })
  redeliveries: number;
  @ApiProperty({ description: 'When the event happened: the payload’s `timestamp`' })
  @Field(() => GraphQLISODateTime, { description: 'When the event happened: the payload’s `timestamp`.' })
  occurredAt: Date;
  @ApiPropertyOptional({ nullable: true, description: 'When the next attempt is due (pending only)' })
  @Field(() => GraphQLISODateTime, {
    nullable: true,
    description: 'When the next attempt is due; null unless pending.',
  })
  nextAttemptAt: Date | null;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => GraphQLISODateTime, {
    nullable: true,
    description: 'When the last attempt started; null before the first.',
  })
  lastAttemptAt: Date | null;
  @ApiPropertyOptional({ type: Number, nullable: true })
  @Field(() => Int, { nullable: true, description: 'HTTP status of the last answer; null when none came.' })
  lastStatusCode: number | null;
  @ApiPropertyOptional({ type: DeliveryErrorView, nullable: true })
  @Field(() => DeliveryErrorView, {
    nullable: true,
    description: 'Why the last attempt failed; null when it succeeded or none was made.',
  })
  lastError: DeliveryErrorView | null;
  @ApiPropertyOptional({ nullable: true })
  @Field(() => GraphQLISODateTime, { nullable: true, description: 'When it succeeded; null until then.' })
  deliveredAt: Date | null;
  @ApiProperty() @Field(() => GraphQLISODateTime, { description: 'When it was queued.' }) createdAt: Date;
}

@ObjectType('WebhookDeliveryDetail', { description: 'A delivery with its payload and every attempt.' })
export class DeliveryDetailView extends DeliveryView {
  @ApiProperty({
    description: 'The JSON body POSTed: {type, timestamp, data}',
    example: { type: 'deletion.completed', timestamp: '2026-11-22T10:00:00.000Z', data: {} },
  })
  @Field(() => GraphQLJSONObject, { description: 'The JSON body POSTed: {type, timestamp, data}.' })
  payload: Record<string, unknown>;
  @ApiProperty({ type: [AttemptView] })
  @Field(() => [AttemptView], { description: 'Every attempt, oldest first.' })
  attempts: AttemptView[];
}

@ObjectType('WebhookDeliveryPage', { description: 'A page of a subscription’s deliveries.' })
export class DeliveryPage {
  @ApiProperty({ type: [DeliveryView] })
  @Field(() => [DeliveryView], { description: 'Newest first.' })
  items: DeliveryView[];
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, {
    nullable: true,
    description: 'Pass as `cursor` for the next page; null at the end.',
  })
  nextCursor: string | null;
}
