import {
  CommandLifecycle,
  DOCKER_CAPABILITIES,
  executorError,
  type ExecResult,
  type GcExecutor,
  type GcExecutorCapabilities,
  type GcExecutorConfig,
  type GcExecutorSecrets,
} from './gc-executor.js';

/**
 * The executor for a registry's stored configuration and its opened secrets. Rejects with
 * EXECUTOR_CONFIG_INVALID for a configuration that cannot work (missing credentials, no pinned host
 * key, ...); nothing connects before the first command.
 *
 * An executor's module, with its client library (ssh2, dockerode and its gRPC stack, the Kubernetes
 * client: together about 25 MB of a process's heap), is loaded the first time a registry uses that type.
 * Most deployments use one type; the rest would only sit in every API and worker process's heap, which
 * V8 marks whole in each full collection.
 */
export async function createExecutor(
  config: GcExecutorConfig,
  secrets: GcExecutorSecrets = {},
): Promise<GcExecutor> {
  switch (config.type) {
    case 'local':
      return new (await import('./local-executor.js')).LocalGcExecutor(config);
    case 'ssh':
      return new (await import('./ssh-executor.js')).SshGcExecutor(config, secrets);
    case 'docker':
      return new (await import('./docker-executor.js')).DockerGcExecutor(config, secrets);
    case 'kubernetes':
      return new (await import('./kubernetes-executor.js')).KubernetesGcExecutor(config, secrets);
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
      return DOCKER_CAPABILITIES;
    case 'kubernetes':
      return { stop: false, readOnly: false, restart: !!config.labelSelector };
    default:
      return { stop: false, readOnly: false, restart: false };
  }
}
