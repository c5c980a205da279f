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
import type { Readable } from 'node:stream';

type Incoming =
  { op: 'run'; id: number; argv: string[] } | { op: 'kill'; id: number; signal: NodeJS.Signals };

const running = new Map<number, ChildProcess>();
/** Output bytes waiting for the worker, per stream, before the command's pipe is no longer read. */
const MAX_PENDING = 1 << 20;
/** How long output waits for more before it is sent, and how much is sent without waiting. */
const FLUSH_MS = 5;
const CHUNK = 64 * 1024;

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
  const forwarders = [forward(id, 1, child.stdout!), forward(id, 2, child.stderr!)];
  // 'close' comes after both streams ended; their last bytes go out before the exit.
  child.on('close', (code, signal) => {
    running.delete(id);
    void Promise.all(forwarders.map((f) => f.drained())).then(() =>
      send({ op: 'exit', id, code, signal, pid: child.pid ?? null, error }),
    );
  });
}

/**
 * Sends a stream's output to the worker in few messages: after the first, bytes wait up to FLUSH_MS for
 * more, or until CHUNK of them are there, and while one message is being sent the next gathers. A
 * command that writes a line at a time (the collector prints thousands) would otherwise cost a message
 * per line, and each costs both processes far more than its bytes. The stream is paused while
 * MAX_PENDING bytes wait: a worker that reads slowly slows the command, as a pipe would.
 */
function forward(id: number, fd: 1 | 2, stream: Readable): { drained: () => Promise<void> } {
  let pending: Buffer[] = [];
  let bytes = 0;
  let inFlight = false;
  let timer: NodeJS.Timeout | undefined;
  let draining: (() => void) | undefined;
  let first = true;
  const sendPending = () => {
    clearTimeout(timer);
    timer = undefined;
    if (inFlight || !bytes) return;
    const data = pending.length === 1 ? pending[0] : Buffer.concat(pending, bytes);
    pending = [];
    bytes = 0;
    inFlight = true;
    if (stream.isPaused()) stream.resume();
    send({ op: 'out', id, fd, data }, sent);
  };
  const sent = () => {
    inFlight = false;
    if (bytes >= CHUNK || (draining && bytes)) sendPending();
    else if (bytes) timer ??= setTimeout(sendPending, FLUSH_MS);
    else draining?.();
  };
  stream.on('data', (data: Buffer) => {
    pending.push(data);
    bytes += data.length;
    if (bytes >= MAX_PENDING) stream.pause();
    if (inFlight) return;
    // The first bytes go at once: the worker may be waiting to see the command under way.
    if (bytes >= CHUNK || first) {
      first = false;
      sendPending();
    } else timer ??= setTimeout(sendPending, FLUSH_MS);
  });
  return {
    drained: () =>
      new Promise<void>((resolve) => {
        if (!inFlight && !bytes) return resolve();
        draining = resolve;
        if (!inFlight) sendPending();
      }),
  };
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
