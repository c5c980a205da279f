import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { repositoryGlobProblem } from './glob-sql.js';

/**
 * Repository globs stored before every entry point checked them the same way (`team-[a/**` was taken
 * by role bindings and webhooks): said at start, once per API process, so an operator fixes them. Such a
 * binding still works for permission checks but list queries skip it; a webhook still matches as picomatch
 * reads the glob.
 */
@Injectable()
export class StoredGlobsCheck implements OnApplicationBootstrap {
  private readonly logger = new Logger('StoredGlobs');

  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  async onApplicationBootstrap(): Promise<void> {
    for (const { kind, id, repository } of await this.refused())
      this.logger.warn(
        `${kind} ${id} has the repository glob "${repository}", which the gateway no longer accepts (${repositoryGlobProblem(repository)}): change it (PATCH /api/v1/${kind === 'role binding' ? 'role-bindings' : 'webhooks'}/${id})`,
      );
  }

  /** The role bindings and webhook subscriptions whose stored glob the check refuses. */
  async refused(): Promise<{ kind: 'role binding' | 'webhook'; id: string; repository: string }[]> {
    const rows = (await this.ds.query(
      `SELECT 'role binding' AS kind, id, repository FROM role_bindings WHERE repository IS NOT NULL
       UNION ALL
       SELECT 'webhook' AS kind, id, repository FROM webhook_subscriptions WHERE repository IS NOT NULL`,
    )) as { kind: 'role binding' | 'webhook'; id: string; repository: string }[];
    return rows.filter((r) => repositoryGlobProblem(r.repository) !== null);
  }
}
