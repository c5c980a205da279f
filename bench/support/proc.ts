import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let clockTicks: number | undefined;

/** USER_HZ, the unit of utime/stime in /proc/<pid>/stat (100 on every common Linux). */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** Peak resident set size (VmHWM) in bytes, or undefined when the process is gone or /proc is absent. */
export function peakRssBytes(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = /^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kib === undefined ? undefined : Number(kib) * 1024;
  } catch {
    return undefined;
  }
}

/** User + system CPU seconds the process has used so far (its own threads, not its children). */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may contain spaces and parentheses; fields count from after its ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return (utime + stime) / ticksPerSecond();
  } catch {
    return undefined;
  }
}

/** The pids of a process's children (Linux's /proc/<pid>/task/<pid>/children); empty when /proc cannot tell. */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** CPU seconds used by `pid` while `fn` runs (undefined when /proc cannot tell). */
export async function measureCpu<T>(pid: number | undefined, fn: () => Promise<T>): Promise<[T, number?]> {
  const before = pid === undefined ? undefined : cpuSeconds(pid);
  const result = await fn();
  const after = pid === undefined ? undefined : cpuSeconds(pid);
  return [result, before === undefined || after === undefined ? undefined : after - before];
}

/**
 * Busy and total CPU seconds of the whole machine, summed over all cores (first line of /proc/stat);
 * undefined without /proc.
 */
export function machineCpu(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
    const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = ticks.reduce((a, b) => a + b, 0);
    const idle = ticks[3] + ticks[4]; // idle + iowait
    return { busy: (total - idle) / ticksPerSecond(), total: total / ticksPerSecond() };
  } catch {
    return undefined;
  }
}

/** Share of the machine's CPU time (all cores) that was busy between two machineCpu() readings. */
export function busyShare(
  before: ReturnType<typeof machineCpu>,
  after: ReturnType<typeof machineCpu>,
): number | undefined {
  if (!before || !after || after.total === before.total) return undefined;
  return (after.busy - before.busy) / (after.total - before.total);
}

/**
 * CPU seconds per pid of every process whose command name (comm) is one of `names`, e.g. the Postgres
 * and Redis servers the gateway uses, which no bench starts; an empty map without /proc.
 */
export function cpuSecondsByCommand(names: readonly string[]): Map<number, number> {
  const out = new Map<number, number>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return out;
  }
  for (const pid of pids) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (!names.includes(comm)) continue;
      const seconds = cpuSeconds(Number(pid));
      if (seconds !== undefined) out.set(Number(pid), seconds);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/**
 * CPU used between two cpuSecondsByCommand() readings: processes present in both count their difference,
 * processes started in between count everything (those that exited in between are lost).
 */
export function cpuSecondsBetween(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, seconds] of after) total += seconds - (before.get(pid) ?? 0);
  return total;
}
