/**
 * `npm run bench [-- --only catalog] [-- --scale 0.1] [-- --reseed]`: runs the benchmarks in sequence
 * and prints one summary table. Each benchmark compares the gateway with a direct baseline measured
 * in the same run. A missed target is printed as MISSED and the exit code stays 0; a benchmark that
 * cannot measure (a server does not start, the crawls disagree) fails the run.
 */
import { parseArgs } from 'node:util';
import { auditBench } from './audit.bench.js';
import { catalogBench } from './catalog.bench.js';
import { deletionsBench } from './deletions.bench.js';
import { gcBench } from './gc.bench.js';
import type { BenchContext, BenchReport, Benchmark } from './support/bench.js';

// In run order. Later issues add gc and audit here.
const BENCHMARKS: Benchmark[] = [catalogBench, deletionsBench, gcBench, auditBench];

const USAGE = `usage: npm run bench -- [--only name[,name]] [--scale factor] [--reseed]
  --only    run only these benchmarks: ${BENCHMARKS.map((b) => b.name).join(', ')}
  --scale   multiply dataset sizes (default 1, the size each issue specifies); e.g. 0.05 for a quick run
  --reseed  seed stored datasets again even when their marker matches`;

function parseOptions(): { selected: Benchmark[]; scale: number; reseed: boolean } {
  const { values } = parseArgs({
    options: {
      only: { type: 'string', multiple: true },
      scale: { type: 'string', default: '1' },
      reseed: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: false,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const scale = Number(values.scale);
  if (!Number.isFinite(scale) || scale <= 0) throw new Error(`--scale must be a positive number\n${USAGE}`);
  const names = (values.only ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !BENCHMARKS.some((b) => b.name === n));
  if (unknown.length) throw new Error(`unknown benchmark ${unknown.join(', ')}\n${USAGE}`);
  const selected = names.length ? BENCHMARKS.filter((b) => names.includes(b.name)) : BENCHMARKS;
  return { selected, scale, reseed: values.reseed };
}

function log(message: string): void {
  const time = new Date().toISOString().slice(11, 19);
  process.stderr.write(`[bench ${time}] ${message}\n`);
}

function printSummary(
  reports: BenchReport[],
  failures: { name: string; error: unknown }[],
  scale: number,
): void {
  const rows: string[][] = [['benchmark', 'metric', 'value', 'target', 'result']];
  for (const report of reports) {
    for (const m of report.metrics) {
      const status = m.ok === undefined ? '' : m.ok ? 'ok' : 'MISSED';
      rows.push([report.name, m.label, m.value, m.target ?? '', status]);
    }
  }
  for (const f of failures)
    rows.push([
      f.name,
      'FAILED',
      String((f.error as Error)?.message ?? f.error).split('\n')[0],
      '',
      'FAILED',
    ]);
  const widths = [0, 1, 3].map((col) => Math.max(...rows.map((r) => r[col].length)));
  const line = (r: string[]) =>
    [r[0].padEnd(widths[0]), r[1].padEnd(widths[1]), r[3].padEnd(widths[2]), r[4].padEnd(6), r[2]]
      .join('  ')
      .trimEnd();
  console.log('');
  console.log(`Benchmark summary${scale === 1 ? '' : ` (--scale ${scale}: not the specified size)`}`);
  console.log(line(rows[0]));
  console.log('-'.repeat(Math.min(160, widths[0] + widths[1] + widths[2] + 20)));
  for (const r of rows.slice(1)) console.log(line(r));
  const missed = reports.flatMap((r) =>
    r.metrics.filter((m) => m.ok === false).map((m) => `${r.name}: ${m.label}`),
  );
  if (missed.length) console.log(`\nMISSED targets: ${missed.join('; ')}`);
}

async function main(): Promise<number> {
  const { selected, scale, reseed } = parseOptions();
  const ctx: BenchContext = { scale, reseed, log };
  const reports: BenchReport[] = [];
  const failures: { name: string; error: unknown }[] = [];
  for (const bench of selected) {
    log(`${bench.name}: ${bench.title}`);
    const t0 = performance.now();
    try {
      reports.push(await bench.run(ctx));
      log(`${bench.name}: done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    } catch (err) {
      failures.push({ name: bench.name, error: err });
      log(`${bench.name}: FAILED: ${(err as Error)?.stack ?? String(err)}`);
    }
  }
  printSummary(reports, failures, scale);
  return failures.length ? 1 : 0;
}

// Interrupted runs still reach the 'exit' hooks that kill the gateways and registries they started.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error((err as Error)?.message ?? err);
    process.exit(2);
  },
);
