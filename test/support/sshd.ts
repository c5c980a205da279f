import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

/**
 * A real OpenSSH server on a loopback port for one test suite: its own host key and client keys
 * (ssh-keygen, in a temp dir), key authentication only, started as `sshd -D -e -f <config>`. It logs
 * in as the current user (root on CI), so commands run on this very machine.
 *
 * Nothing outlives the test process: stop() kills it, an 'exit' hook too, and a watchdog shell
 * kills it when this process dies without either (SIGKILL included).
 */
const SSHD = '/usr/sbin/sshd';

export interface SshKey {
  privateKey: string;
  publicKey: string;
  /** As `ssh-keygen -lf` prints it: SHA256:<base64>. */
  fingerprint: string;
  passphrase?: string;
}

const live = new Set<ChildProcess>();
let hooked = false;

function keygen(dir: string, name: string, passphrase = ''): void {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', name, '-f', join(dir, name)]);
}

async function readKey(dir: string, name: string, passphrase?: string): Promise<SshKey> {
  const publicKey = (await readFile(join(dir, `${name}.pub`), 'utf8')).trim();
  const listing = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', join(dir, `${name}.pub`)], {
    encoding: 'utf8',
  });
  const fingerprint = /SHA256:\S+/.exec(listing)?.[0];
  if (!fingerprint) throw new Error(`ssh-keygen -l printed no fingerprint: ${listing}`);
  return { privateKey: await readFile(join(dir, name), 'utf8'), publicKey, fingerprint, passphrase };
}

export class SshServer {
  readonly host = '127.0.0.1';
  readonly username = userInfo().username;
  private child?: ChildProcess;
  private watchdog?: ChildProcess;

  private constructor(
    readonly dir: string,
    readonly port: number,
    /** The server's host key (its fingerprint is what an executor pins). */
    readonly hostKey: SshKey,
    /** Authorized, no passphrase. */
    readonly clientKey: SshKey,
    /** Authorized, with a passphrase. */
    readonly passphraseKey: SshKey,
    /** A valid key the server does not know. */
    readonly strangerKey: SshKey,
    /** Another host key, never served: pinning it must fail. */
    readonly otherHostKey: SshKey,
  ) {}

  get logPath(): string {
    return join(this.dir, 'sshd.log');
  }

  static async start(): Promise<SshServer> {
    const dir = await mkdtemp(join(tmpdir(), 'registry-gateway-sshd-'));
    try {
      keygen(dir, 'host_ed25519');
      keygen(dir, 'other_host_ed25519');
      keygen(dir, 'client');
      keygen(dir, 'client_pass', 'correct horse battery');
      keygen(dir, 'stranger');
      const server = new SshServer(
        dir,
        await freePort(),
        await readKey(dir, 'host_ed25519'),
        await readKey(dir, 'client'),
        await readKey(dir, 'client_pass', 'correct horse battery'),
        await readKey(dir, 'stranger'),
        await readKey(dir, 'other_host_ed25519'),
      );
      await server.launch();
      return server;
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    this.watchdog?.kill('SIGKILL');
    this.watchdog = undefined;
    await rm(this.dir, { recursive: true, force: true });
  }

  private async launch(): Promise<void> {
    // sshd refuses to start without its privilege separation directory
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    await writeFile(
      join(this.dir, 'authorized_keys'),
      `${this.clientKey.publicKey}\n${this.passphraseKey.publicKey}\n`,
      { mode: 0o600 },
    );
    const config = join(this.dir, 'sshd_config');
    await writeFile(
      config,
      [
        `Port ${this.port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${join(this.dir, 'host_ed25519')}`,
        `PidFile ${join(this.dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(this.dir, 'authorized_keys')}`,
        'StrictModes no',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'PermitRootLogin prohibit-password',
        'MaxSessions 32',
        'MaxStartups 64',
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    );
    const log = openSync(this.logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    this.child = child;
    live.add(child);
    child.once('exit', () => live.delete(child));
    if (!hooked) {
      hooked = true;
      process.on('exit', () => live.forEach((c) => c.kill('SIGKILL')));
    }
    if (child.pid !== undefined) {
      const watchdog = spawn(
        'sh',
        ['-c', 'read _; kill -KILL "$1" 2>/dev/null', 'sshd-watchdog', String(child.pid)],
        {
          stdio: ['pipe', 'ignore', 'ignore'],
          detached: true,
        },
      );
      watchdog.on('error', () => undefined);
      watchdog.unref();
      (watchdog.stdin as unknown as Socket | null)?.unref();
      this.watchdog = watchdog;
    }
    child.unref();

    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) {
        throw new Error(
          `sshd exited with ${child.exitCode}: ${await readFile(this.logPath, 'utf8').catch(() => '')}`,
        );
      }
      if (await this.banner()) return;
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error('sshd did not answer within 10 s');
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** True once the port answers with an SSH banner. */
  private banner(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = createConnection({ host: this.host, port: this.port });
      socket.setTimeout(1_000);
      socket.once('data', (d) => {
        socket.destroy();
        resolve(d.toString().startsWith('SSH-'));
      });
      socket.once('timeout', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', () => resolve(false));
    });
  }
}
