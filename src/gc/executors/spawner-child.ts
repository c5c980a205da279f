/*
 * The worker's spawner (see spawner.ts): a small process that starts commands for it. Forking is copying
 * the page tables of the process that forks, and in a worker of a few hundred MiB that takes 10 to 20 ms
 * during which its event loop stands still; from this process it takes one or two. It imports nothing
 * but Node's own modules, so it runs as it is, built (`.js`) or from source (`.ts`, Node strips the types).
 *
 * Messages in: { op: 'run', id, argv } and { op: 'kill', id, signal }.
 * Messages out: { op: 'out', id, fd, data } for each chunk, then { op: 'exit', id, code, signal, error }.
 * Each command gets its own process group; when the worker goes away (the IPC channel closes) every
 * group still running is killed and this process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';

type Incoming =
  { op: 'run'; id: number; argv: string[] } | { op: 'kill'; id: number; signal: NodeJS.Signals };

const running = new Map<number, ChildProcess>();

function send(message: object, sent?: () => void): void {
  if (!process.connected) return;
  process.send!(message, undefined, {}, () => sent?.());
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

function run(id: number, argv: string[]): void {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  running.set(id, child);
  let error: { code?: string; message: string } | undefined;
  child.on('error', (err: NodeJS.ErrnoException) => {
    error = { code: err.code, message: err.message };
  });
  for (const [fd, stream] of [
    [1, child.stdout],
    [2, child.stderr],
  ] as const) {
    // One chunk in flight at a time: a worker that reads slowly slows the command, as a pipe would.
    stream.on('data', (data: Buffer) => {
      stream.pause();
      send({ op: 'out', id, fd, data }, () => stream.resume());
    });
  }
  child.on('close', (code, signal) => {
    running.delete(id);
    send({ op: 'exit', id, code, signal, pid: child.pid ?? null, error });
  });
}

process.on('message', (m: Incoming) => {
  if (m.op === 'run') run(m.id, m.argv);
  else if (m.op === 'kill') {
    const child = running.get(m.id);
    if (child) killGroup(child, m.signal);
  }
});

process.on('disconnect', () => {
  for (const child of running.values()) killGroup(child, 'SIGKILL');
  process.exit(0);
});
