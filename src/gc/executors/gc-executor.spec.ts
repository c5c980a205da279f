import { createRequire } from 'node:module';
import { NestFactory } from '@nestjs/core';
import {
  Args,
  GraphQLSchemaBuilderModule,
  GraphQLSchemaFactory,
  Mutation,
  Query,
  Resolver,
} from '@nestjs/graphql';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { describe, expect, it } from 'vitest';
import { DomainError } from '../../common/domain-error.js';
import { ExecStreamDemuxer } from './docker-executor.js';
import { createExecutor, executorCapabilities } from './executor-factory.js';
import {
  GcExecutorCapabilitiesView,
  GcExecutorDto,
  GcExecutorSecretsDto,
  GcExecutorSecretsStateView,
  secretsFor,
  secretsState,
  toExecutorConfig,
} from './gc-executor.dto.js';
import {
  CommandLifecycle,
  gcArgv,
  OutputCollector,
  PID_MARKER,
  PidMarkerFilter,
  pidWrapped,
  shellQuote,
  withEnv,
  type ExecResult,
} from './gc-executor.js';
import { exitCodeFromStatus } from './kubernetes-executor.js';
import { sshFingerprint } from './ssh-executor.js';

const ok = (output = ''): ExecResult => ({ exitCode: 0, output, outputTruncated: false });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as DomainError).code;
  }
  return undefined;
}

describe('gcArgv', () => {
  it('puts the flags before the config path, as the collector expects', () => {
    expect(gcArgv(['registry'], '/etc/r.yml', { dryRun: true, deleteUntagged: true })).toEqual([
      'registry',
      'garbage-collect',
      '--dry-run',
      '--delete-untagged',
      '/etc/r.yml',
    ]);
    expect(gcArgv(['docker-registry'], '/c.yml', { dryRun: false, deleteUntagged: false })).toEqual([
      'docker-registry',
      'garbage-collect',
      '/c.yml',
    ]);
  });
});

describe('OutputCollector', () => {
  it('keeps everything under the cap and streams every chunk', () => {
    const seen: string[] = [];
    const c = new OutputCollector((chunk) => seen.push(chunk), 100);
    c.push('hello ');
    c.write('stdout', Buffer.from('world'));
    c.end();
    expect(c.result()).toEqual({ output: 'hello world', outputTruncated: false });
    expect(seen).toEqual(['hello ', 'world']);
  });

  it('keeps the head and the tail of a long output and says how much it cut', () => {
    const c = new OutputCollector(undefined, 20);
    for (let i = 0; i < 10; i++) c.push(`line-${i}\n`);
    const { output, outputTruncated } = c.result();
    expect(outputTruncated).toBe(true);
    expect(output.startsWith('line-0\nlin\n[registry-gateway: 50 bytes')).toBe(true);
    expect(output.endsWith('\nline-9\n')).toBe(true);
    expect(output).toMatch(
      /\[registry-gateway: 50 bytes of output omitted here; the first 10 and the last 10 bytes are kept\]/,
    );
  });

  it('does not split a multi-byte character across chunks of one stream', () => {
    const c = new OutputCollector();
    const bytes = Buffer.from('größe', 'utf8');
    c.write('stderr', bytes.subarray(0, 3));
    c.write('stderr', bytes.subarray(3));
    c.end();
    expect(c.result().output).toBe('größe');
  });
});

describe('PidMarkerFilter', () => {
  it('takes the PID line off the start of stderr, even split across chunks', () => {
    const f = new PidMarkerFilter();
    expect(f.push(`${PID_MARKER.slice(0, 5)}`)).toBe('');
    expect(f.push(`${PID_MARKER.slice(5)} 4242\nfirst line\n`)).toBe('first line\n');
    expect(f.pid).toBe(4242);
    expect(f.push('more\n')).toBe('more\n');
  });

  it('passes through a stream that does not start with the marker', () => {
    const f = new PidMarkerFilter();
    expect(f.push('sh: not found\n')).toBe('sh: not found\n');
    expect(f.pid).toBeUndefined();
    const g = new PidMarkerFilter();
    expect(g.push('__regi')).toBe('');
    expect(g.flush()).toBe('__regi');
  });

  it('wraps argv so the shell reports its PID and then becomes the command', () => {
    expect(pidWrapped(['registry', 'garbage-collect', 'c.yml'])).toEqual([
      'sh',
      '-c',
      `echo "${PID_MARKER} $$" >&2; exec "$@"`,
      'sh',
      'registry',
      'garbage-collect',
      'c.yml',
    ]);
  });
});

describe('shell and env helpers', () => {
  it('quotes every word so the remote shell expands nothing', () => {
    expect(shellQuote(['du', '-sk', '/var/lib/registry'])).toBe('du -sk /var/lib/registry');
    expect(shellQuote(['echo', "it's $HOME; rm -rf /", ''])).toBe(`echo 'it'\\''s $HOME; rm -rf /' ''`);
  });

  it('adds variables with env and refuses names a shell would not take', () => {
    expect(withEnv(['registry'], { A: '1', B_2: 'x y' })).toEqual(['env', 'A=1', 'B_2=x y', 'registry']);
    expect(withEnv(['registry'], {})).toEqual(['registry']);
    expect(codeOf(() => withEnv(['x'], { 'A;B': '1' }))).toBe('EXECUTOR_CONFIG_INVALID');
  });

  it('prints OpenSSH-style fingerprints', () => {
    // ssh-keygen -lf of this key blob prints the same: SHA256 of the blob, base64 without padding
    expect(sshFingerprint(Buffer.from('key'))).toBe('SHA256:LHDhK3oGRvkiefQnx7OOczTY5Tic/xZ6HcMOc/gmtoM');
  });
});

describe('CommandLifecycle', () => {
  it('derives capabilities from the commands that exist', () => {
    const none = new CommandLifecycle('local', undefined, async () => ok());
    expect(none.capabilities).toEqual({ stop: false, readOnly: false, restart: false });
    const stopStart = new CommandLifecycle('local', { stop: ['s'], start: ['t'] }, async () => ok());
    expect(stopStart.capabilities).toEqual({ stop: true, readOnly: false, restart: true });
    const full = new CommandLifecycle('ssh', { stop: ['s'], start: ['t'], startReadOnly: ['r'] }, async () =>
      ok(),
    );
    expect(full.capabilities).toEqual({ stop: true, readOnly: true, restart: true });
  });

  it('restarts as stop then start when there is no restart command, and refuses what it cannot do', async () => {
    const ran: string[][] = [];
    const l = new CommandLifecycle('local', { stop: ['stop'], start: ['start'] }, async (argv) => {
      ran.push(argv);
      return ok();
    });
    await l.restart(false);
    expect(ran).toEqual([['stop'], ['start']]);
    await expect(l.restart(true)).rejects.toMatchObject({ code: 'FENCE_UNSUPPORTED' });
    await expect(l.start(true)).rejects.toMatchObject({ code: 'FENCE_UNSUPPORTED' });
    await expect(new CommandLifecycle('local', undefined, async () => ok()).stop()).rejects.toMatchObject({
      code: 'FENCE_UNSUPPORTED',
    });
  });

  it('fails a lifecycle command that exits non-zero, with its output', async () => {
    const l = new CommandLifecycle('local', { stop: ['stop'], start: ['start'] }, async () => ({
      exitCode: 3,
      output: 'unit not found',
      outputTruncated: false,
    }));
    await expect(l.stop()).rejects.toMatchObject({
      code: 'EXECUTOR_COMMAND_FAILED',
      details: { argv: ['stop'], exitCode: 3, output: 'unit not found' },
    });
  });
});

describe('ExecStreamDemuxer', () => {
  const frame = (type: number, text: string) => {
    const payload = Buffer.from(text);
    const header = Buffer.alloc(8);
    header.writeUInt8(type, 0);
    header.writeUInt32BE(payload.length, 4);
    return Buffer.concat([header, payload]);
  };

  it('splits frames that arrive cut anywhere', () => {
    const got: string[] = [];
    const d = new ExecStreamDemuxer((stream, payload) => got.push(`${stream}:${payload.toString()}`));
    const all = Buffer.concat([
      frame(1, 'out one\n'),
      frame(2, 'err\n'),
      frame(1, ''),
      frame(1, 'out two\n'),
    ]);
    for (let i = 0; i < all.length; i += 3) d.push(all.subarray(i, i + 3));
    expect(got).toEqual(['stdout:out one\n', 'stderr:err\n', 'stdout:', 'stdout:out two\n']);
    expect(d.leftover).toBe(0);
  });

  it('refuses a stream that is not multiplexed', () => {
    const d = new ExecStreamDemuxer(() => undefined);
    expect(() => d.push(Buffer.from('plain text, a TTY stream'))).toThrow(DomainError);
  });
});

describe('exitCodeFromStatus (v4.channel.k8s.io status)', () => {
  it('reads Success and NonZeroExitCode, and nothing from other failures', () => {
    expect(exitCodeFromStatus({ status: 'Success' })).toBe(0);
    expect(
      exitCodeFromStatus({
        status: 'Failure',
        reason: 'NonZeroExitCode',
        details: { causes: [{ reason: 'ExitCode', message: '2' }] },
      }),
    ).toBe(2);
    expect(
      exitCodeFromStatus({ status: 'Failure', reason: 'InternalError', message: 'exec failed' }),
    ).toBeUndefined();
  });
});

describe('GcExecutorDto', () => {
  const validate = (plain: object) => {
    const dto = plainToInstance(GcExecutorDto, plain);
    const errors = validateSync(dto, { whitelist: true, forbidNonWhitelisted: true });
    return { dto, problems: errors.map((e) => e.property) };
  };

  it('checks the fields each type needs and ignores the others', () => {
    expect(validate({ type: 'local', configPath: '/c.yml', storagePath: '/s' }).problems).toEqual([]);
    expect(validate({ type: 'local' }).problems.sort()).toEqual(['configPath', 'storagePath']);
    expect(validate({ type: 'ssh', configPath: '/c', storagePath: '/s' }).problems.sort()).toEqual([
      'host',
      'hostKeySha256',
      'username',
    ]);
    expect(
      validate({
        type: 'ssh',
        host: 'h',
        username: 'u',
        insecureIgnoreHostKey: true,
        configPath: '/c',
        storagePath: '/s',
      }).problems,
    ).toEqual([]);
    expect(
      validate({
        type: 'ssh',
        host: 'h',
        username: 'u',
        hostKeySha256: 'MD5:aa',
        configPath: '/c',
        storagePath: '/s',
      }).problems,
    ).toEqual(['hostKeySha256']);
    expect(validate({ type: 'docker' }).problems).toEqual(['container']);
    expect(validate({ type: 'docker', container: 'registry' }).problems).toEqual([]);
    expect(validate({ type: 'kubernetes' }).problems.sort()).toEqual(['namespace', 'pod']);
    expect(
      validate({ type: 'kubernetes', namespace: 'reg', labelSelector: 'app=registry' }).problems,
    ).toEqual([]);
    expect(
      validate({ type: 'local', configPath: '/c', storagePath: '/s', env: { 'BAD NAME': 'x' } }).problems,
    ).toEqual(['env']);
    expect(
      validate({ type: 'local', configPath: '/c', storagePath: '/s', lifecycle: { stop: [], start: ['x'] } })
        .problems,
    ).toEqual(['lifecycle']);
  });

  it('converts to the config of its type only', () => {
    const { dto } = validate({
      type: 'docker',
      container: 'registry',
      username: 'ignored',
      lifecycle: { stop: ['x'], start: ['y'] },
      env: { A: '1' },
    });
    expect(toExecutorConfig(dto)).toEqual({ type: 'docker', container: 'registry', env: { A: '1' } });
  });

  it('keeps only the secrets a type uses and reports which exist', () => {
    const all = { privateKey: 'k', passphrase: '', password: 'p', tlsKey: 't', kubeconfig: 'c' };
    expect(secretsFor('ssh', all)).toEqual({ privateKey: 'k', password: 'p' });
    expect(secretsFor('docker', all)).toEqual({ tlsKey: 't' });
    expect(secretsFor('local', all)).toEqual({});
    expect(secretsState({ privateKey: 'k' })).toEqual({
      hasPrivateKey: true,
      hasPassphrase: false,
      hasPassword: false,
      hasTlsKey: false,
      hasKubeconfig: false,
    });
  });
});

@Resolver()
class DtoProbeResolver {
  @Query(() => GcExecutorDto)
  executor(): GcExecutorDto {
    throw new Error('schema only');
  }
  @Query(() => GcExecutorSecretsStateView)
  secrets(): GcExecutorSecretsStateView {
    throw new Error('schema only');
  }
  @Query(() => GcExecutorCapabilitiesView)
  capabilities(): GcExecutorCapabilitiesView {
    throw new Error('schema only');
  }
  @Mutation(() => Boolean)
  setExecutor(
    @Args('executor') _executor: GcExecutorDto,
    @Args('secrets', { type: () => GcExecutorSecretsDto, nullable: true }) _secrets?: GcExecutorSecretsDto,
  ): boolean {
    throw new Error('schema only');
  }
}

describe('GraphQL types of the executor DTOs', () => {
  it('build into a schema: one input and one output shape each', async () => {
    const app = await NestFactory.createApplicationContext(GraphQLSchemaBuilderModule, { logger: false });
    try {
      const schema = await app.get(GraphQLSchemaFactory).create([DtoProbeResolver]);
      // the CommonJS copy of graphql that Nest built the schema with
      const { printSchema } = createRequire(import.meta.url)('graphql') as typeof import('graphql');
      const sdl = printSchema(schema);
      expect(sdl).toMatch(
        /input GcExecutorInput \{[^}]*type: GcExecutorType![^}]*lifecycle: GcExecutorLifecycleInput[^}]*env: JSONObject/,
      );
      expect(sdl).toMatch(/type GcExecutorSettings \{[^}]*tls: GcExecutorTls\n/);
      expect(sdl).toMatch(/input GcExecutorSecretsInput \{[^}]*kubeconfig: String/);
      expect(sdl).toMatch(/type GcExecutorSecretsState \{[^}]*hasPrivateKey: Boolean!/);
      // The values in order, their descriptions left out.
      expect(sdl.replace(/\s*"""[\s\S]*?"""/g, '')).toMatch(
        /enum GcExecutorType \{\s*local\s*ssh\s*docker\s*kubernetes\s*\}/,
      );
      expect(sdl).not.toMatch(/type GcExecutorSecrets \{/);
    } finally {
      await app.close();
    }
  });
});

describe('createExecutor', () => {
  it('refuses configurations that cannot work', async () => {
    const ssh = { type: 'ssh' as const, host: 'h', username: 'u', configPath: '/c', storagePath: '/s' };
    const invalid = { code: 'EXECUTOR_CONFIG_INVALID' };
    await expect(createExecutor(ssh, { password: 'p' })).rejects.toMatchObject(invalid); // no pinned key
    await expect(createExecutor({ ...ssh, insecureIgnoreHostKey: true }, {})).rejects.toMatchObject(invalid);
    await expect(createExecutor({ type: 'kubernetes', namespace: 'n', pod: 'p' }, {})).rejects.toMatchObject(
      invalid,
    );
    await expect(createExecutor({ type: 'nope' } as never)).rejects.toMatchObject(invalid);
  });

  it('reports capabilities per type', async () => {
    expect(executorCapabilities({ type: 'docker', container: 'r' })).toEqual({
      stop: false,
      readOnly: false,
      restart: true,
    });
    expect(executorCapabilities({ type: 'kubernetes', namespace: 'n', pod: 'p' })).toEqual({
      stop: false,
      readOnly: false,
      restart: false,
    });
    expect(executorCapabilities({ type: 'kubernetes', namespace: 'n', labelSelector: 'app=r' }).restart).toBe(
      true,
    );
    expect(
      executorCapabilities({
        type: 'local',
        configPath: '/c',
        storagePath: '/s',
        lifecycle: { stop: ['a'], start: ['b'], startReadOnly: ['c'] },
      }),
    ).toEqual({ stop: true, readOnly: true, restart: true });
    expect((await createExecutor({ type: 'docker', container: 'r' })).capabilities).toEqual({
      stop: false,
      readOnly: false,
      restart: true,
    });
  });
});
