import { Controller, Get, Req } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { requestPrincipal } from '../common/request-context.js';
import { Authenticated } from './auth.decorators.js';
import { PrincipalView, RoleCatalog } from './auth.dto.js';
import {
  PERMISSION_DESCRIPTIONS,
  PERMISSIONS,
  ROLE_DESCRIPTIONS,
  ROLE_PERMISSIONS,
  ROLES,
} from './permissions.js';

@ApiTags('access')
@Controller('api/v1')
export class AuthController {
  @Get('me')
  @Authenticated()
  @ApiOperation({ summary: 'Who the token belongs to, and its roles on which scopes' })
  @ApiOkResponse({ type: PrincipalView })
  me(@Req() req: FastifyRequest): PrincipalView {
    const p = requestPrincipal(req)!;
    return {
      type: p.type,
      id: p.id,
      name: p.name,
      via: p.via,
      ...(p.groups ? { groups: p.groups } : {}),
      grants: p.access.grants.map((g) => ({ ...g })),
      globalPermissions: PERMISSIONS.filter((perm) => p.access.can(perm)),
    };
  }

  @Get('roles')
  @Authenticated()
  @ApiOperation({ summary: 'The roles and what each permits' })
  @ApiOkResponse({ type: RoleCatalog })
  roles(): RoleCatalog {
    return {
      roles: ROLES.map((name) => ({
        name,
        description: ROLE_DESCRIPTIONS[name],
        permissions: [...ROLE_PERMISSIONS[name]],
      })),
      permissions: PERMISSIONS.map((name) => ({ name, description: PERMISSION_DESCRIPTIONS[name] })),
    };
  }
}
