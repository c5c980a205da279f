import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import {
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { ApiErrors } from '../common/api-errors.js';
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
@ApiErrors({ 400: ['VALIDATION_FAILED'] })
@RequirePermission('access:manage')
export class ServiceAccountsController {
  constructor(private readonly accounts: ServiceAccountsService) {}

  @Post()
  @ApiOperation({
    summary: 'Create a service account (a non-human principal); give it roles with role bindings',
  })
  @ApiCreatedResponse({ type: ServiceAccountView })
  @ApiErrors({ 409: ['SERVICE_ACCOUNT_EXISTS'] })
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
  @ApiErrors({ 404: ['SERVICE_ACCOUNT_NOT_FOUND'] })
  get(@Param() p: ServiceAccountIdParam): Promise<ServiceAccountView> {
    return this.accounts.get(p.id);
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a service account, its tokens and its role bindings' })
  @ApiNoContentResponse()
  @ApiErrors({ 404: ['SERVICE_ACCOUNT_NOT_FOUND'] })
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
  @ApiErrors({ 404: ['SERVICE_ACCOUNT_NOT_FOUND'] })
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
  @ApiErrors({ 404: ['SERVICE_ACCOUNT_NOT_FOUND', 'TOKEN_NOT_FOUND'] })
  async revokeToken(@Param() p: TokenIdParam, @Ctx() ctx: RequestContext): Promise<void> {
    await this.accounts.revokeToken(p.id, p.tokenId, ctx);
  }
}
