import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';

/*
 * OpenAPI shapes of distribution's notification envelope. Documentation only: the body is checked by
 * parseEnvelope(), which tolerates fields a newer registry adds (the global pipe would refuse them).
 */

export class RegistryEventTargetDoc {
  @ApiPropertyOptional() mediaType?: string;
  @ApiPropertyOptional({ example: 'sha256:…' }) digest?: string;
  @ApiPropertyOptional() size?: number;
  @ApiPropertyOptional() length?: number;
  @ApiProperty({ example: 'team-a/api' }) repository: string;
  @ApiPropertyOptional() url?: string;
  @ApiPropertyOptional({ description: 'Set when a tag alone was deleted (Distribution 3)' }) tag?: string;
}

export class RegistryEventRequestDoc {
  @ApiPropertyOptional() id?: string;
  @ApiPropertyOptional({ example: '10.0.0.7:51234', description: 'Client address, recorded as sourceIp' })
  addr?: string;
  @ApiPropertyOptional() host?: string;
  @ApiPropertyOptional({ example: 'DELETE' }) method?: string;
  @ApiPropertyOptional({
    example: 'curl/8.5.0',
    description: 'Events from user agents starting with registry-gateway are skipped',
  })
  useragent?: string;
}

export class RegistryEventActorDoc {
  @ApiPropertyOptional({ description: 'The user the registry authenticated, if any' }) name?: string;
}

export class RegistryEventSourceDoc {
  @ApiPropertyOptional() addr?: string;
  @ApiPropertyOptional() instanceID?: string;
}

export class RegistryEventDoc {
  @ApiProperty({ description: 'Unique per event; redeliveries carry the same id' }) id: string;
  @ApiPropertyOptional() timestamp?: string;
  @ApiProperty({ example: 'delete', description: 'push, pull, mount and delete; only delete is recorded' })
  action: string;
  @ApiPropertyOptional({ type: RegistryEventTargetDoc }) target?: RegistryEventTargetDoc;
  @ApiPropertyOptional({ type: RegistryEventRequestDoc }) request?: RegistryEventRequestDoc;
  @ApiPropertyOptional({ type: RegistryEventActorDoc }) actor?: RegistryEventActorDoc;
  @ApiPropertyOptional({ type: RegistryEventSourceDoc }) source?: RegistryEventSourceDoc;
}

export class RegistryEventsEnvelopeDoc {
  @ApiProperty({ type: [RegistryEventDoc], maxItems: 1000 }) events: RegistryEventDoc[];
}

export class RegistryEventsReceiptView {
  @ApiProperty({ description: 'Events in the envelope' }) received: number;
  @ApiProperty({ description: 'Deletes written to the audit trail' }) audited: number;
  @ApiProperty({ description: 'Deletes already recorded by an earlier delivery' }) duplicates: number;
  @ApiProperty({ description: 'Other actions, and deletes the gateway made itself' }) ignored: number;
}
