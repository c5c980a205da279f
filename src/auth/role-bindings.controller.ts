import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
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
  CreateRoleBindingDto,
  RoleBindingIdParam,
  RoleBindingList,
  RoleBindingQueryDto,
  RoleBindingView,
  UpdateRoleBindingDto,
} from './auth.dto.js';
import { RoleBindingsService } from './role-bindings.service.js';

@ApiTags('access')
@Controller('api/v1/role-bindings')
@ApiErrors({ 400: ['VALIDATION_FAILED'] })
@RequirePermission('access:manage')
export class RoleBindingsController {
  constructor(private readonly bindings: RoleBindingsService) {}

  @Post()
  @ApiOperation({
    summary: 'Give a user, an OIDC group or a service account a role on a scope',
    description:
      'Scope: every registry (no `registry`), one registry, or the repositories of one registry matching a glob (`repository: "team-a/**"`). Registries are named, so a binding may precede the registry.',
  })
  @ApiCreatedResponse({ type: RoleBindingView })
  @ApiErrors({ 404: ['SERVICE_ACCOUNT_NOT_FOUND'], 409: ['ROLE_BINDING_EXISTS'] })
  create(@Body() dto: CreateRoleBindingDto, @Ctx() ctx: RequestContext): Promise<RoleBindingView> {
    return this.bindings.create(dto, ctx);
  }

  @Get()
  @ApiOperation({ summary: 'Role bindings, oldest first (filtered)' })
  @ApiOkResponse({ type: RoleBindingList })
  list(@Query() q: RoleBindingQueryDto): Promise<RoleBindingList> {
    return this.bindings.list(q);
  }

  @Get(':id')
  @ApiOkResponse({ type: RoleBindingView })
  @ApiErrors({ 404: ['ROLE_BINDING_NOT_FOUND'] })
  get(@Param() p: RoleBindingIdParam): Promise<RoleBindingView> {
    return this.bindings.get(p.id);
  }

  @Patch(':id')
  @ApiOperation({ summary: 'Change the role or the scope of a binding' })
  @ApiOkResponse({ type: RoleBindingView })
  @ApiErrors({ 404: ['ROLE_BINDING_NOT_FOUND'], 409: ['ROLE_BINDING_EXISTS'] })
  update(
    @Param() p: RoleBindingIdParam,
    @Body() dto: UpdateRoleBindingDto,
    @Ctx() ctx: RequestContext,
  ): Promise<RoleBindingView> {
    return this.bindings.update(p.id, dto, ctx);
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiNoContentResponse()
  @ApiErrors({ 404: ['ROLE_BINDING_NOT_FOUND'] })
  async remove(@Param() p: RoleBindingIdParam, @Ctx() ctx: RequestContext): Promise<void> {
    await this.bindings.remove(p.id, ctx);
  }
}
