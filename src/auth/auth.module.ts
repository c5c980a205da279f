import { Module } from '@nestjs/common';
import { APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { AuthController } from './auth.controller.js';
import { AuthGuard } from './auth.guard.js';
import { Authenticator } from './authenticator.service.js';
import { OidcVerifier } from './oidc-verifier.js';
import { QueueBoardAuth } from './queue-board-auth.js';
import { RequestRateLimiter } from './rate-limiter.js';
import { HandlerRefusalsInterceptor, Refusals } from './refusals.js';
import { RoleBindingsController } from './role-bindings.controller.js';
import { RoleBindingsService } from './role-bindings.service.js';
import { ServiceAccountsController } from './service-accounts.controller.js';
import { ServiceAccountsService } from './service-accounts.service.js';

/**
 * Authentication and authorization of the API process: the global guard on every REST route and
 * GraphQL resolver, principals (OIDC users, service accounts, the bootstrap admin), role bindings.
 */
@Module({
  controllers: [AuthController, ServiceAccountsController, RoleBindingsController],
  providers: [
    OidcVerifier,
    Authenticator,
    RequestRateLimiter,
    ServiceAccountsService,
    RoleBindingsService,
    QueueBoardAuth,
    Refusals,
    { provide: APP_GUARD, useClass: AuthGuard },
    { provide: APP_INTERCEPTOR, useClass: HandlerRefusalsInterceptor },
  ],
})
export class AuthModule {}
