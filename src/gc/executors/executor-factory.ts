import { DockerGcExecutor } from './docker-executor.js';
import {
  CommandLifecycle,
  executorError,
  type ExecResult,
  type GcExecutor,
  type GcExecutorCapabilities,
  type GcExecutorConfig,
  type GcExecutorSecrets,
} from './gc-executor.js';
import { KubernetesGcExecutor } from './kubernetes-executor.js';
import { LocalGcExecutor } from './local-executor.js';
import { SshGcExecutor } from './ssh-executor.js';

/**
 * The executor for a registry's stored configuration and its opened secrets. Throws
 * EXECUTOR_CONFIG_INVALID for a configuration that cannot work (missing credentials, no pinned host
 * key, ...); nothing connects before the first command.
 */
export function createExecutor(config: GcExecutorConfig, secrets: GcExecutorSecrets = {}): GcExecutor {
  switch (config.type) {
    case 'local':
      return new LocalGcExecutor(config);
    case 'ssh':
      return new SshGcExecutor(config, secrets);
    case 'docker':
      return new DockerGcExecutor(config, secrets);
    case 'kubernetes':
      return new KubernetesGcExecutor(config, secrets);
    default:
      throw executorError(
        'EXECUTOR_CONFIG_INVALID',
        `unknown executor type ${String((config as { type?: unknown }).type)}`,
      );
  }
}

const never = (): Promise<ExecResult> => Promise.reject(new Error('not runnable'));

/** What an executor of this configuration can do, without secrets or a connection (for views and early refusals). */
export function executorCapabilities(config: GcExecutorConfig): GcExecutorCapabilities {
  switch (config.type) {
    case 'local':
    case 'ssh':
      return new CommandLifecycle(config.type, config.lifecycle, never).capabilities;
    case 'docker':
      return { stop: true, readOnly: false, restart: true };
    case 'kubernetes':
      return { stop: false, readOnly: false, restart: !!config.labelSelector };
    default:
      return { stop: false, readOnly: false, restart: false };
  }
}
