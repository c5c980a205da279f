/*
 * The worker's spawner (see spawner.ts): a small process that starts commands for it. Forking is copying
 * the page tables of the process that forks, and in a worker of a few hundred MiB that takes 10 to 20 ms
 * during which its event loop stands still; from this process it takes one or two. It imports nothing
 * but Node's own modules, so it runs as it is, built (`.js`) or from source (`.ts`, Node strips the types).
 *
 * Messages in: { op: 'run', id, argv, viaFiles } and { op: 'kill', id, signal }.
 * Messages out: { op: 'started', id, pid }, { op: 'out', id, fd, data } for each chunk, then
 * { op: 'exit', id, code, signal, error }.
 * Each command gets its own process group; when the worker goes away (the IPC channel closes) every
 * group still running is killed and this process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

type Incoming =
  | { op: 'run'; id: number; argv: string[]; viaFiles?: boolean }
  | { op: 'kill'; id: number; signal: NodeJS.Signals };

const running = new Map<number, ChildProcess>();
/** Output bytes waiting for the worker, per stream, before the command's pipe is no longer read. */
const MAX_PENDING = 1 << 20;
/** How long output waits for more before it is sent, and how much is sent without waiting. */
const FLUSH_MS = 5;
const CHUNK = 64 * 1024;
/** How often the output files of a command run `viaFiles` are read. */
const POLL_MS = 25;

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

/**
 * Starts a command. Its output goes through pipes, or with `viaFiles` (a command that writes thousands of
 * short lines one at a time: the collector, `du -a`) into two unlinked files read every POLL_MS (the first
 * time sooner): a pipe's reader is woken for every line, and on two cores that costs the command itself 5
 * to 10% of its time, and this process CPU for every line. Where no file can be made, pipes it is.
 */
function run(id: number, argv: string[], viaFiles = false): void {
  const files = viaFiles ? outputFiles(id) : undefined;
  let child: ChildProcess;
  try {
    child = spawn(argv[0], argv.slice(1), {
      stdio: ['ignore', files?.[0] ?? 'pipe', files?.[1] ?? 'pipe'],
      detached: true,
    });
  } catch (err) {
    files?.forEach((f) => closeSync(f));
    send({ op: 'exit', id, code: null, signal: null, pid: null, error: { message: (err as Error).message } });
    return;
  }
  running.set(id, child);
  // The worker learns the command's process group, to kill it itself should this process die.
  if (child.pid !== undefined) send({ op: 'started', id, pid: child.pid });
  let error: { code?: string; message: string } | undefined;
  child.on('error', (err: NodeJS.ErrnoException) => {
    error = { code: err.code, message: err.message };
  });
  const forwarders = files
    ? [tail(id, 1, files[0]), tail(id, 2, files[1])]
    : [forward(id, 1, child.stdout!), forward(id, 2, child.stderr!)];
  // 'close' comes after both streams ended; their last bytes go out before the exit.
  child.on('close', (code, signal) => {
    running.delete(id);
    void Promise.all(forwarders.map((f) => f.drained())).then(() =>
      send({ op: 'exit', id, code, signal, pid: child.pid ?? null, error }),
    );
  });
}

/** Two files for a command's stdout and stderr, unlinked at once (they go when the last holder closes them). */
function outputFiles(id: number): [number, number] | undefined {
  const opened: number[] = [];
  try {
    for (const name of ['out', 'err']) {
      const path = join(tmpdir(), `registry-gateway-${process.pid}-${id}-${name}-${Date.now()}`);
      opened.push(openSync(path, 'wx+', 0o600));
      unlinkSync(path);
    }
    return [opened[0], opened[1]];
  } catch {
    opened.forEach((f) => closeSync(f));
    return undefined;
  }
}

/**
 * Sends a stream's output to the worker in few messages: after the first, bytes wait up to FLUSH_MS for
 * more, or until CHUNK of them are there, and while one message is being sent the next gathers. A
 * command that writes a line at a time (the collector prints thousands) would otherwise cost a message
 * per line, and each costs both processes far more than its bytes. `source` is paused while MAX_PENDING
 * bytes wait: a worker that reads slowly slows the reading.
 */
function sender(id: number, fd: 1 | 2, source: { pause(): void; resume(): void }) {
  let pending: Buffer[] = [];
  let bytes = 0;
  let inFlight = false;
  let paused = false;
  let timer: NodeJS.Timeout | undefined;
  let draining: (() => void) | undefined;
  let first = true;
  const sendPending = () => {
    clearTimeout(timer);
    timer = undefined;
    if (inFlight || !bytes) return;
    // At most CHUNK bytes a message: the worker makes a string of each, and one past V8's large-object
    // size (128 KiB) goes straight to the old generation, where megabytes of listings a run would bring
    // the next full collection of the worker's heap closer (a file read every POLL_MS holds that much).
    const all = pending.length === 1 ? pending[0] : Buffer.concat(pending, bytes);
    const data = all.subarray(0, CHUNK);
    pending = all.length > CHUNK ? [all.subarray(CHUNK)] : [];
    bytes = all.length - data.length;
    inFlight = true;
    if (paused && bytes < MAX_PENDING) {
      paused = false;
      source.resume();
    }
    send({ op: 'out', id, fd, data }, sent);
  };
  const sent = () => {
    inFlight = false;
    if (bytes >= CHUNK || (draining && bytes)) sendPending();
    else if (bytes) timer ??= setTimeout(sendPending, FLUSH_MS);
    else draining?.();
  };
  return {
    push(data: Buffer) {
      pending.push(data);
      bytes += data.length;
      if (bytes >= MAX_PENDING && !paused) {
        paused = true;
        source.pause();
      }
      if (inFlight) return;
      // The first bytes go at once: the worker may be waiting to see the command under way.
      if (bytes >= CHUNK || first) {
        first = false;
        sendPending();
      } else timer ??= setTimeout(sendPending, FLUSH_MS);
    },
    /** Settles once everything pushed so far has been sent. */
    drained: () =>
      new Promise<void>((resolve) => {
        if (!inFlight && !bytes) return resolve();
        draining = resolve;
        if (!inFlight) sendPending();
      }),
  };
}

/** A command's pipe, forwarded as it is read. */
function forward(id: number, fd: 1 | 2, stream: Readable): { drained: () => Promise<void> } {
  const out = sender(id, fd, stream);
  stream.on('data', (data: Buffer) => out.push(data));
  return out;
}

/**
 * A command's output file, read every POLL_MS from where the last read ended; `drained` (once the command
 * has exited) reads it to its end.
 */
function tail(id: number, fd: 1 | 2, file: number): { drained: () => Promise<void> } {
  let position = 0;
  let paused = false;
  let ended: (() => void) | undefined;
  const buffer = Buffer.allocUnsafe(CHUNK);
  const out = sender(id, fd, { pause: () => (paused = true), resume: () => (paused = false) });
  let timer: NodeJS.Timeout | undefined;
  let wait = 1;
  const read = () => {
    // Called by its timer, or at the end (drained): either way, one timer at a time.
    clearTimeout(timer);
    let n = 0;
    while (!paused && (n = readSync(file, buffer, 0, CHUNK, position)) > 0) {
      position += n;
      out.push(Buffer.from(buffer.subarray(0, n)));
    }
    if (ended && !paused && n === 0) {
      closeSync(file);
      ended();
      return;
    }
    // Until the first output, read again soon (the worker may wait to see the command under way), then
    // every POLL_MS.
    wait = position ? POLL_MS : Math.min(POLL_MS, wait * 2);
    timer = setTimeout(read, wait);
  };
  timer = setTimeout(read, wait);
  return {
    drained: () =>
      new Promise<void>((resolve) => {
        ended = () => void out.drained().then(resolve);
        read();
      }),
  };
}

process.on('message', (m: Incoming) => {
  if (m.op === 'run') run(m.id, m.argv, m.viaFiles);
  else if (m.op === 'kill') {
    const child = running.get(m.id);
    if (child) killGroup(child, m.signal);
  }
});

process.on('disconnect', () => {
  for (const child of running.values()) killGroup(child, 'SIGKILL');
  process.exit(0);
});

// This process shares the worker's process group: a Ctrl-C or a supervisor signalling the group reaches it
// too. The commands stay the worker's to stop (its shutdown aborts a run, which kills the collector before
// the registry is put back); once the worker is gone, 'disconnect' kills what is left.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);
