import { Field, InputType, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  MinLength,
  ValidateBy,
  ValidateIf,
  ValidateNested,
  type ValidationOptions,
} from 'class-validator';
import { GraphQLJSONObject } from 'graphql-scalars';
import type {
  DockerExecutorConfig,
  GcExecutorConfig,
  GcExecutorSecrets,
  GcExecutorType,
  KubernetesExecutorConfig,
  LifecycleCommands,
  LocalExecutorConfig,
  SshExecutorConfig,
} from './gc-executor.js';

/**
 * Executor configuration as the API takes it: one flat object discriminated by `type` (GraphQL has no
 * input unions), each field validated only for the types that use it. `toExecutorConfig` keeps only
 * the fields of the chosen type. Secrets travel separately (GcExecutorSecretsDto): write-only,
 * stored sealed, reported back only as `has*` flags.
 */

export enum GcExecutorKind {
  local = 'local',
  ssh = 'ssh',
  docker = 'docker',
  kubernetes = 'kubernetes',
}
registerEnumType(GcExecutorKind, {
  name: 'GcExecutorType',
  description:
    'Where garbage-collect runs: local (a process on the worker host), ssh (on the registry host), docker (exec in the registry container), kubernetes (exec in the registry pod).',
  valuesMap: {
    local: { description: 'A process on the worker host.' },
    ssh: { description: 'Over SSH on the registry host.' },
    docker: { description: 'Exec in the registry container through the Docker Engine API.' },
    kubernetes: { description: 'Exec in the registry pod through the Kubernetes API.' },
  },
});

const ARGV_MAX = 64;
const WORD_MAX = 4096;
const PATH_MAX = 4096;
const ENV_MAX = 64;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** OpenSSH prints `SHA256:` and 43 unpadded base64 characters. */
export const SSH_FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}=?$/;

const is =
  (...types: GcExecutorType[]) =>
  (o: { type?: string }) =>
    types.includes(o.type as GcExecutorType);
const isWhenSet =
  (...types: GcExecutorType[]) =>
  (o: { type?: string }, v: unknown) =>
    v !== undefined && v !== null && types.includes(o.type as GcExecutorType);

/** A flat object of environment variables: names like shell variables, string values. */
function IsEnvMap(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isEnvMap',
      validator: {
        validate: (value: unknown) =>
          !!value &&
          typeof value === 'object' &&
          !Array.isArray(value) &&
          Object.keys(value).length <= ENV_MAX &&
          Object.entries(value as Record<string, unknown>).every(
            ([k, v]) => ENV_NAME_RE.test(k) && typeof v === 'string' && v.length <= WORD_MAX,
          ),
        defaultMessage: () =>
          `env must be an object of at most ${ENV_MAX} variables with names like SOME_NAME and string values`,
      },
    },
    options,
  );
}

/** An argv list: 1-64 non-empty strings. */
function argvRules(): PropertyDecorator[] {
  return [
    IsArray(),
    ArrayMinSize(1),
    ArrayMaxSize(ARGV_MAX),
    IsString({ each: true }),
    MinLength(1, { each: true }),
    MaxLength(WORD_MAX, { each: true }),
  ];
}

function apply(...decorators: PropertyDecorator[]): PropertyDecorator {
  return (target, key) => decorators.forEach((d) => d(target, key));
}

@InputType('GcExecutorLifecycleInput', {
  description:
    'argv lists run where the registry lives to stop and start it (no shell on local; quoted for the remote shell on ssh).',
})
@ObjectType('GcExecutorLifecycle', {
  description: 'argv lists run where the registry lives to stop and start it.',
})
export class GcExecutorLifecycleDto implements LifecycleCommands {
  @ApiProperty({ type: [String], example: ['systemctl', 'stop', 'docker-registry'] })
  @Field(() => [String], { description: 'argv that stops the registry.' })
  @apply(...argvRules())
  stop: string[];

  @ApiProperty({ type: [String], example: ['systemctl', 'start', 'docker-registry'] })
  @Field(() => [String], { description: 'argv that starts it.' })
  @apply(...argvRules())
  start: string[];

  @ApiPropertyOptional({
    type: [String],
    description: 'Start in read-only maintenance mode; without it the readonly fence mode is unavailable.',
    example: ['systemctl', 'start', 'docker-registry-readonly'],
  })
  @Field(() => [String], {
    nullable: true,
    description:
      'argv that starts it in read-only maintenance mode; without it the readonly fence is unavailable.',
  })
  @IsOptional()
  @apply(...argvRules())
  startReadOnly?: string[];

  @ApiPropertyOptional({ type: [String], description: 'Default: stop, then start.' })
  @Field(() => [String], { nullable: true, description: 'argv that restarts it; default: stop, then start.' })
  @IsOptional()
  @apply(...argvRules())
  restart?: string[];

  @ApiPropertyOptional({ type: [String], description: 'Default: stop, then startReadOnly.' })
  @Field(() => [String], {
    nullable: true,
    description: 'argv that restarts it read-only; default: stop, then startReadOnly.',
  })
  @IsOptional()
  @apply(...argvRules())
  restartReadOnly?: string[];
}

@InputType('GcExecutorTlsInput', {
  description: 'docker: TLS to the Engine (the client key is the tlsKey secret).',
})
@ObjectType('GcExecutorTls', { description: 'docker: TLS to the Engine.' })
export class GcExecutorTlsDto {
  @ApiPropertyOptional({ description: 'PEM CA bundle of the Engine certificate.' })
  @Field({ nullable: true, description: 'PEM CA bundle of the Engine certificate.' })
  @IsOptional()
  @IsString()
  @MaxLength(64 * 1024)
  ca?: string;

  @ApiPropertyOptional({ description: 'PEM client certificate.' })
  @Field({ nullable: true, description: 'PEM client certificate.' })
  @IsOptional()
  @IsString()
  @MaxLength(64 * 1024)
  cert?: string;
}

@InputType('GcExecutorInput', {
  description:
    'Where and how garbage-collect runs for a registry. Fields apply to the types named in their description.',
})
@ObjectType('GcExecutorSettings', {
  description:
    'Where and how garbage-collect runs for a registry. Fields apply to the types named in their description.',
})
export class GcExecutorDto {
  @ApiProperty({ enum: GcExecutorKind })
  @Field(() => GcExecutorKind, { description: 'Where garbage-collect runs.' })
  @IsIn(Object.values(GcExecutorKind))
  type: GcExecutorKind;

  @ApiPropertyOptional({
    type: [String],
    description:
      "All types: argv prefix of the registry binary. Default ['registry'] (Debian's package: ['docker-registry']).",
  })
  @Field(() => [String], {
    nullable: true,
    description:
      "All types: argv prefix of the registry binary; default ['registry'] (Debian: ['docker-registry']).",
  })
  @IsOptional()
  @apply(...argvRules())
  command?: string[];

  @ApiPropertyOptional({
    description:
      'All types (required for local and ssh): the registry config file. docker, kubernetes default /etc/docker/registry/config.yml.',
  })
  @Field({
    nullable: true,
    description:
      'All types (required for local and ssh): the registry config file; docker, kubernetes default /etc/docker/registry/config.yml.',
  })
  @ValidateIf((o: GcExecutorDto, v) => is('local', 'ssh')(o) || v !== undefined)
  @IsString()
  @MinLength(1)
  @MaxLength(PATH_MAX)
  configPath?: string;

  @ApiPropertyOptional({
    description:
      'All types (required for local and ssh): the storage folder whose size is measured. docker, kubernetes default /var/lib/registry.',
  })
  @Field({
    nullable: true,
    description:
      'All types (required for local and ssh): the storage folder whose size is measured; docker, kubernetes default /var/lib/registry.',
  })
  @ValidateIf((o: GcExecutorDto, v) => is('local', 'ssh')(o) || v !== undefined)
  @IsString()
  @MinLength(1)
  @MaxLength(PATH_MAX)
  storagePath?: string;

  @ApiPropertyOptional({
    type: GcExecutorLifecycleDto,
    description: 'local, ssh: stop/start commands (fencing, cache clearing).',
  })
  @Field(() => GcExecutorLifecycleDto, {
    nullable: true,
    description: 'local, ssh: stop/start commands (fencing, cache clearing).',
  })
  @ValidateIf(isWhenSet('local', 'ssh'))
  @ValidateNested()
  @Type(() => GcExecutorLifecycleDto)
  lifecycle?: GcExecutorLifecycleDto;

  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: { type: 'string' },
    description: 'All types: environment variables for every command.',
  })
  @Field(() => GraphQLJSONObject, {
    nullable: true,
    description: 'All types: environment variables for every command.',
  })
  @ValidateIf((_o, v) => v !== undefined && v !== null)
  @IsEnvMap()
  env?: Record<string, string>;

  @ApiPropertyOptional({
    description: 'ssh (required): the registry host. docker: the Engine host (TCP) instead of socketPath.',
  })
  @Field({
    nullable: true,
    description: 'ssh (required): the registry host; docker: the Engine host (TCP) instead of socketPath.',
  })
  @ValidateIf((o: GcExecutorDto, v) => is('ssh')(o) || (is('docker')(o) && v !== undefined && v !== null))
  @IsString()
  @MinLength(1)
  @MaxLength(255)
  host?: string;

  @ApiPropertyOptional({
    minimum: 1,
    maximum: 65535,
    description: 'ssh: default 22. docker: default 2376 with TLS, else 2375.',
  })
  @Field(() => Int, {
    nullable: true,
    description: 'ssh: default 22; docker: default 2376 with TLS, else 2375.',
  })
  @ValidateIf(isWhenSet('ssh', 'docker'))
  @IsInt()
  @Min(1)
  @Max(65535)
  port?: number;

  @ApiPropertyOptional({ description: 'ssh (required): the login user.' })
  @Field({ nullable: true, description: 'ssh (required): the login user.' })
  @ValidateIf(is('ssh'))
  @IsString()
  @MinLength(1)
  @MaxLength(255)
  username?: string;

  @ApiPropertyOptional({
    example: 'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s',
    description:
      'ssh (required unless insecureIgnoreHostKey): the pinned host key fingerprint, as `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it.',
  })
  @Field({
    nullable: true,
    description:
      'ssh (required unless insecureIgnoreHostKey): the pinned host key fingerprint, SHA256:… as ssh-keygen -lf prints it.',
  })
  @ValidateIf(
    (o: GcExecutorDto, v) => (is('ssh')(o) && !o.insecureIgnoreHostKey) || (is('ssh')(o) && v !== undefined),
  )
  @IsString()
  @Matches(SSH_FINGERPRINT_RE, { message: 'hostKeySha256 must look like SHA256:<43 base64 characters>' })
  hostKeySha256?: string;

  @ApiPropertyOptional({ description: 'ssh: accept any host key (test setups only).' })
  @Field({ nullable: true, description: 'ssh: accept any host key (test setups only).' })
  @ValidateIf(isWhenSet('ssh'))
  @IsBoolean()
  insecureIgnoreHostKey?: boolean;

  @ApiPropertyOptional({
    minimum: 1000,
    maximum: 300000,
    description: 'ssh: connect + handshake + auth timeout; default 20000.',
  })
  @Field(() => Int, {
    nullable: true,
    description: 'ssh: connect, handshake and auth timeout in milliseconds; default 20000.',
  })
  @ValidateIf(isWhenSet('ssh'))
  @IsInt()
  @Min(1000)
  @Max(300_000)
  connectTimeoutMs?: number;

  @ApiPropertyOptional({
    minimum: 1000,
    maximum: 600000,
    description: 'ssh: keepalive interval; default 15000 (4 missed = dropped).',
  })
  @Field(() => Int, {
    nullable: true,
    description: 'ssh: keepalive interval in milliseconds; default 15000 (4 missed = dropped).',
  })
  @ValidateIf(isWhenSet('ssh'))
  @IsInt()
  @Min(1000)
  @Max(600_000)
  keepaliveIntervalMs?: number;

  @ApiPropertyOptional({ description: 'docker: the Engine socket; default /var/run/docker.sock.' })
  @Field({ nullable: true, description: 'docker: the Engine socket; default /var/run/docker.sock.' })
  @ValidateIf(isWhenSet('docker'))
  @IsString()
  @MaxLength(PATH_MAX)
  socketPath?: string;

  @ApiPropertyOptional({ type: GcExecutorTlsDto })
  @Field(() => GcExecutorTlsDto, {
    nullable: true,
    description: 'docker: TLS to the Engine (the client key is the tlsKey secret).',
  })
  @ValidateIf(isWhenSet('docker'))
  @ValidateNested()
  @Type(() => GcExecutorTlsDto)
  tls?: GcExecutorTlsDto;

  @ApiPropertyOptional({
    description:
      'docker (required): container name or id. kubernetes: the container in the pod (default: its only one).',
  })
  @Field({
    nullable: true,
    description:
      'docker (required): container name or id; kubernetes: the container in the pod (default: its only one).',
  })
  @ValidateIf(
    (o: GcExecutorDto, v) => is('docker')(o) || (is('kubernetes')(o) && v !== undefined && v !== null),
  )
  @IsString()
  @MinLength(1)
  @MaxLength(255)
  container?: string;

  @ApiPropertyOptional({
    minimum: 0,
    maximum: 3600,
    description: 'docker: seconds the Engine waits before killing on stop/restart; default 10.',
  })
  @Field(() => Int, {
    nullable: true,
    description: 'docker: seconds the Engine waits before killing on stop/restart; default 10.',
  })
  @ValidateIf(isWhenSet('docker'))
  @IsInt()
  @Min(0)
  @Max(3600)
  stopTimeoutSeconds?: number;

  @ApiPropertyOptional({
    description:
      'docker, kubernetes: run commands under `sh -c` to learn their PID, so that cancelling a run kills the collector; default true. false for images without a shell.',
  })
  @Field({
    nullable: true,
    description:
      'docker, kubernetes: run commands under `sh -c` so that cancelling a run kills the collector; default true.',
  })
  @ValidateIf(isWhenSet('docker', 'kubernetes'))
  @IsBoolean()
  killOnAbort?: boolean;

  @ApiPropertyOptional({
    description: "kubernetes: use the worker pod's service account instead of the kubeconfig secret.",
  })
  @Field({
    nullable: true,
    description: 'kubernetes: use the worker pod’s service account instead of the kubeconfig secret.',
  })
  @ValidateIf(isWhenSet('kubernetes'))
  @IsBoolean()
  inCluster?: boolean;

  @ApiPropertyOptional({ description: 'kubernetes (required): the namespace of the registry pod.' })
  @Field({ nullable: true, description: 'kubernetes (required): the namespace of the registry pod.' })
  @ValidateIf(is('kubernetes'))
  @IsString()
  @Matches(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, { message: 'namespace must be a DNS label' })
  namespace?: string;

  @ApiPropertyOptional({ description: 'kubernetes (this or labelSelector): a fixed pod name.' })
  @Field({ nullable: true, description: 'kubernetes (this or labelSelector): a fixed pod name.' })
  @ValidateIf(
    (o: GcExecutorDto, v) =>
      (is('kubernetes')(o) && !o.labelSelector) || (is('kubernetes')(o) && v !== undefined),
  )
  @IsString()
  @MinLength(1)
  @MaxLength(253)
  pod?: string;

  @ApiPropertyOptional({
    example: 'app=registry',
    description:
      'kubernetes (this or pod): picks a Running pod; needed for restart (delete the pods, wait for new Ready ones).',
  })
  @Field({
    nullable: true,
    description:
      'kubernetes (this or pod): picks a Running pod; needed for restart (delete the pods, wait for new Ready ones).',
  })
  @ValidateIf(isWhenSet('kubernetes'))
  @IsString()
  @MinLength(1)
  @MaxLength(1024)
  labelSelector?: string;

  @ApiPropertyOptional({
    minimum: 1000,
    maximum: 3600000,
    description: 'kubernetes: how long restart waits for Ready pods; default 300000.',
  })
  @Field(() => Int, {
    nullable: true,
    description: 'kubernetes: milliseconds restart waits for Ready pods; default 300000.',
  })
  @ValidateIf(isWhenSet('kubernetes'))
  @IsInt()
  @Min(1000)
  @Max(3_600_000)
  readyTimeoutMs?: number;
}

@InputType('GcExecutorSecretsInput', {
  description:
    'Write-only credentials of the executor: encrypted at rest, never returned. Omitted fields keep their value.',
})
export class GcExecutorSecretsDto implements GcExecutorSecrets {
  @ApiPropertyOptional({ writeOnly: true, description: 'ssh: private key (OpenSSH or PEM).' })
  @Field({ nullable: true, description: 'ssh: private key (OpenSSH or PEM).' })
  @IsOptional()
  @IsString()
  @MaxLength(64 * 1024)
  privateKey?: string;

  @ApiPropertyOptional({ writeOnly: true, description: 'ssh: passphrase of the private key.' })
  @Field({ nullable: true, description: 'ssh: passphrase of the private key.' })
  @IsOptional()
  @IsString()
  @MaxLength(4096)
  passphrase?: string;

  @ApiPropertyOptional({ writeOnly: true, description: 'ssh: password authentication.' })
  @Field({ nullable: true, description: 'ssh: password authentication.' })
  @IsOptional()
  @IsString()
  @MaxLength(4096)
  password?: string;

  @ApiPropertyOptional({ writeOnly: true, description: 'docker: TLS client key (PEM).' })
  @Field({ nullable: true, description: 'docker: TLS client key (PEM).' })
  @IsOptional()
  @IsString()
  @MaxLength(64 * 1024)
  tlsKey?: string;

  @ApiPropertyOptional({ writeOnly: true, description: 'kubernetes: kubeconfig YAML (unless inCluster).' })
  @Field({ nullable: true, description: 'kubernetes: kubeconfig YAML (unless inCluster).' })
  @IsOptional()
  @IsString()
  @MaxLength(1024 * 1024)
  kubeconfig?: string;
}

@ObjectType('GcExecutorSecretsState', {
  description: 'Which executor secrets are stored (never their values).',
})
export class GcExecutorSecretsStateView {
  @ApiProperty() @Field({ description: 'An ssh private key is stored.' }) hasPrivateKey: boolean;
  @ApiProperty()
  @Field({ description: 'A passphrase of the ssh private key is stored.' })
  hasPassphrase: boolean;
  @ApiProperty() @Field({ description: 'An ssh password is stored.' }) hasPassword: boolean;
  @ApiProperty() @Field({ description: 'A docker TLS client key is stored.' }) hasTlsKey: boolean;
  @ApiProperty() @Field({ description: 'A kubeconfig is stored.' }) hasKubeconfig: boolean;
}

@ObjectType('GcExecutorCapabilities', {
  description:
    'What the executor can do for fencing and cache clearing; other fence modes are refused (FENCE_UNSUPPORTED).',
})
export class GcExecutorCapabilitiesView {
  @ApiProperty({ description: 'Stop and start the registry (fence mode stop).' })
  @Field({ description: 'Stop and start the registry (fence mode stop).' })
  stop: boolean;
  @ApiProperty({ description: 'Start or restart it in read-only mode (fence mode readonly).' })
  @Field({ description: 'Start or restart it in read-only mode (fence mode readonly).' })
  readOnly: boolean;
  @ApiProperty({ description: 'Restart it (clears an in-memory blob descriptor cache).' })
  @Field({ description: 'Restart it (clears an in-memory blob descriptor cache).' })
  restart: boolean;
}

export function secretsState(secrets: GcExecutorSecrets | undefined): GcExecutorSecretsStateView {
  return {
    hasPrivateKey: !!secrets?.privateKey,
    hasPassphrase: !!secrets?.passphrase,
    hasPassword: !!secrets?.password,
    hasTlsKey: !!secrets?.tlsKey,
    hasKubeconfig: !!secrets?.kubeconfig,
  };
}

/** Only the secrets the executor type uses; empty strings are dropped. */
export function secretsFor(type: GcExecutorType, secrets: GcExecutorSecrets | undefined): GcExecutorSecrets {
  const keep: Record<GcExecutorType, (keyof GcExecutorSecrets)[]> = {
    local: [],
    ssh: ['privateKey', 'passphrase', 'password'],
    docker: ['tlsKey'],
    kubernetes: ['kubeconfig'],
  };
  const out: GcExecutorSecrets = {};
  for (const key of keep[type]) if (secrets?.[key]) out[key] = secrets[key];
  return out;
}

function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null)) as T;
}

function lifecycleOf(l: GcExecutorLifecycleDto | undefined): LifecycleCommands | undefined {
  if (!l) return undefined;
  return defined({
    stop: l.stop,
    start: l.start,
    startReadOnly: l.startReadOnly,
    restart: l.restart,
    restartReadOnly: l.restartReadOnly,
  });
}

/** The validated DTO as the executor config of its type, without the fields of other types. */
export function toExecutorConfig(dto: GcExecutorDto): GcExecutorConfig {
  const common = { command: dto.command, env: dto.env ?? undefined };
  switch (dto.type) {
    case GcExecutorKind.local:
      return defined<LocalExecutorConfig>({
        type: 'local',
        ...common,
        configPath: dto.configPath ?? '',
        storagePath: dto.storagePath ?? '',
        lifecycle: lifecycleOf(dto.lifecycle),
      });
    case GcExecutorKind.ssh:
      return defined<SshExecutorConfig>({
        type: 'ssh',
        ...common,
        host: dto.host ?? '',
        port: dto.port,
        username: dto.username ?? '',
        hostKeySha256: dto.hostKeySha256,
        insecureIgnoreHostKey: dto.insecureIgnoreHostKey,
        configPath: dto.configPath ?? '',
        storagePath: dto.storagePath ?? '',
        lifecycle: lifecycleOf(dto.lifecycle),
        connectTimeoutMs: dto.connectTimeoutMs,
        keepaliveIntervalMs: dto.keepaliveIntervalMs,
      });
    case GcExecutorKind.docker:
      return defined<DockerExecutorConfig>({
        type: 'docker',
        ...common,
        socketPath: dto.socketPath,
        host: dto.host,
        port: dto.port,
        tls: dto.tls ? defined({ ca: dto.tls.ca, cert: dto.tls.cert }) : undefined,
        container: dto.container ?? '',
        configPath: dto.configPath,
        storagePath: dto.storagePath,
        stopTimeoutSeconds: dto.stopTimeoutSeconds,
        killOnAbort: dto.killOnAbort,
      });
    case GcExecutorKind.kubernetes:
      return defined<KubernetesExecutorConfig>({
        type: 'kubernetes',
        ...common,
        inCluster: dto.inCluster,
        namespace: dto.namespace ?? '',
        pod: dto.pod,
        labelSelector: dto.labelSelector,
        container: dto.container,
        configPath: dto.configPath,
        storagePath: dto.storagePath,
        readyTimeoutMs: dto.readyTimeoutMs,
        killOnAbort: dto.killOnAbort,
      });
  }
}
