import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** A command's end, as the spawner reports it. */
export interface SpawnedExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Null when the command never started. */
  pid: number | null;
  /** Set when the command never started (ENOENT, EACCES, ...), or its spawner died. */
  error?: { code?: string; message: string };
}

export interface SpawnHandlers {
  onData: (fd: 1 | 2, data: Buffer) => void;
  /**
   * The command writes thousands of short lines one at a time (the collector, `du -a`): its output goes
   * into files the helper reads a few dozen times a second, instead of pipes whose reader is woken for
   * every line (see spawner-child.ts). The output then arrives up to 25 ms late (its first bytes sooner).
   */
  viaFiles?: boolean;
}

interface Pending extends SpawnHandlers {
  resolve: (exit: SpawnedExit) => void;
  /** The helper that runs it. */
  helper: ChildProcess;
  /** The command's process group, once started. */
  pid?: number;
}

type Outgoing =
  | { op: 'started'; id: number; pid: number }
  | { op: 'out'; id: number; fd: 1 | 2; data: Uint8Array }
  | ({ op: 'exit'; id: number } & SpawnedExit);

/**
 * Starts commands for the worker through one small helper process (spawner-child.ts), so that forking
 * does not copy the worker's page tables each time: in a worker of a few hundred MiB a direct spawn stalls
 * the event loop for 10 to 20 ms, and a GC run starts a dozen commands. The helper is started on first
 * use, once per process, and never keeps the process alive; if it dies, the commands it ran are killed and
 * fail, and the next one starts a new helper.
 */
export class Spawner {
  private static shared?: Spawner;
  private child?: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  static get(): Spawner {
    return (Spawner.shared ??= new Spawner());
  }

  /** The helper's pid while it runs. */
  get pid(): number | undefined {
    return this.child?.connected ? this.child.pid : undefined;
  }

  /** Runs argv (no shell) in its own process group; `kill` signals that group. */
  run(
    argv: string[],
    handlers: SpawnHandlers,
  ): { done: Promise<SpawnedExit>; kill: (s: NodeJS.Signals) => void } {
    const child = this.helper();
    const id = this.nextId++;
    const done = new Promise<SpawnedExit>((resolve) =>
      this.pending.set(id, { ...handlers, resolve, helper: child }),
    );
    // The channel keeps the process alive while a command runs, and only then.
    child.channel?.ref();
    child.send({ op: 'run', id, argv, viaFiles: handlers.viaFiles });
    return {
      done,
      kill: (signal) => {
        if (this.pending.has(id) && child.connected) child.send({ op: 'kill', id, signal });
      },
    };
  }

  private helper(): ChildProcess {
    if (this.child?.connected) return this.child;
    const entry = fileURLToPath(
      new URL(`./spawner-child${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
    );
    const child = spawn(process.execPath, ['--no-warnings', entry], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    child.on('message', (m: Outgoing) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      if (m.op === 'started') p.pid = m.pid;
      else if (m.op === 'out')
        p.onData(m.fd, Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
      else {
        this.pending.delete(m.id);
        if (!this.pending.size) child.channel?.unref();
        p.resolve({ code: m.code, signal: m.signal, pid: m.pid, error: m.error });
      }
    });
    const lost = (why: string) => {
      if (this.child === child) this.child = undefined;
      // Whatever it was running is lost with it, and killed here: a command (the collector) must not go on
      // unseen while the worker puts the registry back. Commands of a newer helper are not this one's.
      for (const [id, p] of this.pending) {
        if (p.helper !== child) continue;
        this.pending.delete(id);
        if (p.pid !== undefined)
          try {
            process.kill(-p.pid, 'SIGKILL');
          } catch {
            // already gone
          }
        p.resolve({ code: null, signal: null, pid: null, error: { message: `the spawner process ${why}` } });
      }
    };
    child.on('exit', (code, signal) => lost(`exited (${signal ?? code})`));
    child.on('error', (err) => lost(`failed: ${err.message}`));
    // Neither the helper nor its channel keeps the worker running.
    child.unref();
    child.channel?.unref();
    this.child = child;
    return child;
  }
}
