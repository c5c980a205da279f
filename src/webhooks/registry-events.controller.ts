import { Body, Controller, Headers, HttpCode, Param, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiConsumes, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Public } from '../auth/auth.decorators.js';
import { ApiErrors } from '../common/api-errors.js';
import { RegistryEventsEnvelopeDoc, RegistryEventsReceiptView } from './registry-events.dto.js';
import { REGISTRY_EVENTS_MEDIA_TYPE, RegistryEventsService } from './registry-events.service.js';

@ApiTags('webhooks')
@Controller('api/v1/registries')
export class RegistryEventsController {
  constructor(private readonly service: RegistryEventsService) {}

  @Post(':name/events')
  // The registry authenticates with its own events token (checked below), not with a gateway principal.
  @Public('registry notifications, authenticated by the per-registry events token')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Receive the notifications of a registry (deletes made directly on it are audited)',
    description:
      'Point the registry’s `notifications.endpoints[].url` here, with `headers: {Authorization: [Bearer <eventsToken>]}`. Each `delete` event is recorded once in the audit trail (`registry.manifest.deleted`, or `registry.tag.deleted` for a tag-only delete), however often it is delivered; deletes the gateway made itself (user agent `registry-gateway`) and every other action are acknowledged and ignored.',
  })
  @ApiBearerAuth()
  @ApiConsumes(REGISTRY_EVENTS_MEDIA_TYPE, 'application/json')
  @ApiBody({ type: RegistryEventsEnvelopeDoc })
  @ApiOkResponse({ type: RegistryEventsReceiptView })
  @ApiErrors({
    400: [{ code: 'VALIDATION_FAILED', when: 'not a notification envelope' }],
    401: [
      {
        code: 'UNAUTHENTICATED',
        when: 'unknown registry, no events token set, or a wrong token (one answer for all)',
      },
    ],
    413: ['PAYLOAD_TOO_LARGE'],
  })
  async receive(
    @Param('name') name: string,
    @Headers('authorization') authorization: string | undefined,
    // `unknown`, so the global ValidationPipe leaves it to parseEnvelope().
    @Body() body: unknown,
  ): Promise<RegistryEventsReceiptView> {
    await this.service.authenticate(name, authorization);
    return this.service.receive(name, body);
  }
}
