import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
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
  get(@Param() p: RoleBindingIdParam): Promise<RoleBindingView> {
    return this.bindings.get(p.id);
  }

  @Patch(':id')
  @ApiOperation({ summary: 'Change the role or the scope of a binding' })
  @ApiOkResponse({ type: RoleBindingView })
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
  async remove(@Param() p: RoleBindingIdParam, @Ctx() ctx: RequestContext): Promise<void> {
    await this.bindings.remove(p.id, ctx);
  }
}
