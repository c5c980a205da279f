import { Injectable, Logger } from '@nestjs/common';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { AppConfig } from '../config/app-config.js';
import { RedisClient } from '../queue/redis.provider.js';
import { RateLimitedError } from './auth-errors.js';
import type { Principal } from './principal.js';

export interface RateLimitState {
  limit: number;
  remaining: number;
  resetSeconds: number;
}

/**
 * Request budgets kept in Redis, so they hold across every API replica: RATE_LIMIT_REQUESTS per
 * principal per window, and RATE_LIMIT_AUTH_FAILURES failed authentications per client address (a
 * token guesser gets 429s instead of answers). When Redis fails, requests pass: the limit protects the
 * gateway, it must not take it down.
 */
@Injectable()
export class RequestRateLimiter {
  private readonly logger = new Logger('Auth');
  private readonly perPrincipal: RateLimiterRedis | null;
  private readonly perAddress: RateLimiterRedis | null;

  constructor(redis: RedisClient, config: AppConfig) {
    const { requests, windowSeconds, authFailures } = config.auth.rateLimit;
    const limiter = (name: string, points: number) =>
      points > 0
        ? new RateLimiterRedis({
            storeClient: redis.redis,
            keyPrefix: redis.key('rate', name),
            points,
            duration: windowSeconds,
          })
        : null;
    this.perPrincipal = limiter('principal', requests);
    this.perAddress = limiter('auth-failures', authFailures);
  }

  /** Counts one request of the principal; RateLimitedError when its budget is spent. */
  async consume(principal: Principal): Promise<RateLimitState | null> {
    if (!this.perPrincipal) return null;
    try {
      const res = await this.perPrincipal.consume(`${principal.type}:${principal.id}`);
      return stateOf(this.perPrincipal.points, res);
    } catch (res) {
      return this.refuse(res, 'principal');
    }
  }

  /** Counts one failed authentication from `address`; RateLimitedError once there were too many. */
  async failed(address: string | null): Promise<void> {
    if (!this.perAddress || !address) return;
    try {
      await this.perAddress.consume(address);
    } catch (res) {
      this.refuse(res, 'auth-failures');
    }
  }

  private refuse(res: unknown, which: string): null {
    if (res instanceof RateLimiterRes)
      throw new RateLimitedError(Math.max(1, Math.ceil(res.msBeforeNext / 1000)));
    this.logger.warn(`rate limit (${which}) not applied, Redis failed: ${(res as Error)?.message ?? res}`);
    return null;
  }
}

function stateOf(limit: number, res: RateLimiterRes): RateLimitState {
  return {
    limit,
    remaining: Math.max(0, res.remainingPoints),
    resetSeconds: Math.max(0, Math.ceil(res.msBeforeNext / 1000)),
  };
}
