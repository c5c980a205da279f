import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import {
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { Ctx, RequestContext } from '../common/request-context.js';
import { RequirePermission } from './auth.decorators.js';
import {
  CreatedTokenView,
  CreateServiceAccountDto,
  CreateTokenDto,
  ServiceAccountIdParam,
  ServiceAccountList,
  ServiceAccountQueryDto,
  ServiceAccountView,
  TokenIdParam,
} from './auth.dto.js';
import { ServiceAccountsService } from './service-accounts.service.js';

@ApiTags('access')
@Controller('api/v1/service-accounts')
@RequirePermission('access:manage')
export class ServiceAccountsController {
  constructor(private readonly accounts: ServiceAccountsService) {}

  @Post()
  @ApiOperation({
    summary: 'Create a service account (a non-human principal); give it roles with role bindings',
  })
  @ApiCreatedResponse({ type: ServiceAccountView })
  create(@Body() dto: CreateServiceAccountDto, @Ctx() ctx: RequestContext): Promise<ServiceAccountView> {
    return this.accounts.create(dto, ctx);
  }

  @Get()
  @ApiOperation({ summary: 'Service accounts with their tokens (never the secrets)' })
  @ApiOkResponse({ type: ServiceAccountList })
  list(@Query() q: ServiceAccountQueryDto): Promise<ServiceAccountList> {
    return this.accounts.list(q);
  }

  @Get(':id')
  @ApiOkResponse({ type: ServiceAccountView })
  get(@Param() p: ServiceAccountIdParam): Promise<ServiceAccountView> {
    return this.accounts.get(p.id);
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a service account, its tokens and its role bindings' })
  @ApiNoContentResponse()
  async remove(@Param() p: ServiceAccountIdParam, @Ctx() ctx: RequestContext): Promise<void> {
    await this.accounts.remove(p.id, ctx);
  }

  @Post(':id/tokens')
  @ApiOperation({
    summary: 'Issue an API token',
    description:
      'The answer is the only place the token appears: the gateway keeps its sha256. Tokens start with `rgw_`; send them as `Authorization: Bearer <token>`. Optional expiry (`expiresAt` or `expiresInDays`); use is recorded as `lastUsedAt`, at most once a minute.',
  })
  @ApiCreatedResponse({ type: CreatedTokenView })
  createToken(
    @Param() p: ServiceAccountIdParam,
    @Body() dto: CreateTokenDto,
    @Ctx() ctx: RequestContext,
  ): Promise<CreatedTokenView> {
    return this.accounts.createToken(p.id, dto, ctx);
  }

  @Delete(':id/tokens/:tokenId')
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke a token; it stops working at once (revoking again changes nothing)' })
  @ApiNoContentResponse()
  async revokeToken(@Param() p: TokenIdParam, @Ctx() ctx: RequestContext): Promise<void> {
    await this.accounts.revokeToken(p.id, p.tokenId, ctx);
  }
}
