import { constants } from 'node:os';
import {
  abortedError,
  CommandGcExecutor,
  executorError,
  KILL_GRACE_MS,
  OutputCollector,
  withEnv,
  type ExecOptions,
  type ExecResult,
  type LocalExecutorConfig,
} from './gc-executor.js';
import { Spawner } from './spawner.js';

/**
 * Runs the registry's binary on the worker's own host (the registry runs here, or its storage is a
 * shared volume). Commands are spawned without a shell; variables are added with `env`, so the
 * worker's environment is inherited as it is. Each command gets its own process group: an abort
 * sends SIGTERM to the group, then SIGKILL after KILL_GRACE_MS. Commands are started by the worker's
 * spawner process; if the worker dies, the spawner kills every group it started.
 */
export class LocalGcExecutor extends CommandGcExecutor {
  readonly type = 'local' as const;

  constructor(private readonly config: LocalExecutorConfig) {
    super('local', config);
  }

  async exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    if (!argv.length) throw executorError('EXECUTOR_CONFIG_INVALID', 'empty command');
    const full = withEnv(argv, { ...this.config.env, ...opts.env });
    return runProcess(full, opts);
  }

  async close(): Promise<void> {
    // nothing held open
  }
}

/**
 * Runs argv (no shell) in its own process group, through the worker's spawner (spawner.ts), and collects
 * its output. ENOENT is exit code 127, as a shell reports it.
 */
export function runProcess(
  argv: string[],
  opts: Pick<ExecOptions, 'onOutput' | 'signal' | 'outputCap' | 'manyLines'>,
): Promise<ExecResult> {
  const { signal } = opts;
  if (signal?.aborted) return Promise.reject(abortedError(`${argv[0]}`));
  const collector = new OutputCollector(opts.onOutput, opts.outputCap);
  const command = Spawner.get().run(argv, {
    onData: (fd, data) => collector.write(fd === 1 ? 'stdout' : 'stderr', data),
    viaFiles: opts.manyLines,
  });
  let aborted = false;
  let killTimer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    aborted = true;
    command.kill('SIGTERM');
    killTimer = setTimeout(() => command.kill('SIGKILL'), KILL_GRACE_MS);
    killTimer.unref();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  return command.done.then(({ code, signal: sig, pid, error }) => {
    signal?.removeEventListener('abort', onAbort);
    if (killTimer) clearTimeout(killTimer);
    if (error && pid === null) {
      if (error.code === 'ENOENT' || error.code === 'EACCES') {
        collector.push(
          `${argv[0]}: ${error.code === 'ENOENT' ? 'command not found' : 'permission denied'}\n`,
        );
        collector.end();
        return { exitCode: error.code === 'ENOENT' ? 127 : 126, ...collector.result() };
      }
      throw executorError('EXECUTOR_COMMAND_FAILED', `cannot run ${argv[0]}: ${error.message}`);
    }
    collector.end();
    if (aborted) throw abortedError(argv.join(' '), collector.result());
    const exitCode = code ?? (sig ? 128 + (constants.signals[sig] ?? 0) : 1);
    return { exitCode, ...collector.result() };
  });
}
