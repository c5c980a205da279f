import { spawn } from 'node:child_process';
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

/**
 * Runs the registry's binary on the worker's own host (the registry runs here, or its storage is a
 * shared volume). Commands are spawned without a shell; variables are added with `env`, so the
 * worker's environment is inherited as it is. Each command gets its own process group: an abort
 * sends SIGTERM to the group, then SIGKILL after KILL_GRACE_MS. If the worker dies, the command dies
 * at its next output line (SIGPIPE on the closed pipe).
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

/** Spawns argv (no shell) in its own process group and collects its output. ENOENT is exit code 127, as a shell reports it. */
export function runProcess(
  argv: string[],
  opts: Pick<ExecOptions, 'onOutput' | 'signal'>,
): Promise<ExecResult> {
  const { signal } = opts;
  if (signal?.aborted) return Promise.reject(abortedError(`${argv[0]}`));
  const collector = new OutputCollector(opts.onOutput);
  return new Promise<ExecResult>((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;
    const killGroup = (sig: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // already gone
      }
    };
    const onAbort = () => {
      aborted = true;
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
      killTimer.unref();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (b: Buffer) => collector.write('stdout', b));
    child.stderr.on('data', (b: Buffer) => collector.write('stderr', b));
    let spawnError: NodeJS.ErrnoException | undefined;
    child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err;
    });
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', onAbort);
      if (killTimer) clearTimeout(killTimer);
      if (spawnError && child.pid === undefined) {
        if (spawnError.code === 'ENOENT' || spawnError.code === 'EACCES') {
          collector.push(
            `${argv[0]}: ${spawnError.code === 'ENOENT' ? 'command not found' : 'permission denied'}\n`,
          );
          collector.end();
          resolve({ exitCode: spawnError.code === 'ENOENT' ? 127 : 126, ...collector.result() });
        } else {
          reject(executorError('EXECUTOR_COMMAND_FAILED', `cannot run ${argv[0]}: ${spawnError.message}`));
        }
        return;
      }
      collector.end();
      if (aborted) {
        reject(abortedError(argv.join(' '), collector.result()));
        return;
      }
      const exitCode = code ?? (sig ? 128 + (constants.signals[sig] ?? 0) : 1);
      resolve({ exitCode, ...collector.result() });
    });
  });
}
