import { Field, Float, Int, ObjectType } from '@nestjs/graphql';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { GraphQLJSONObject } from 'graphql-scalars';

const MISSING_MANIFESTS =
  "Platform manifests the index names that the registry no longer has (what Distribution 2.8's garbage collection with --delete-untagged leaves): pulling those platforms fails. Empty for an intact index and for a single image; size and created count only the platforms that are there.";
const MISSING_CHILD =
  'The registry no longer has this platform manifest (the index is broken: pulling this platform fails). Attestations are not checked.';

@ObjectType('Platform', { description: 'The platform an image is built for.' })
export class PlatformView {
  @ApiProperty({ example: 'linux' }) @Field({ description: 'Operating system, e.g. linux.' }) os: string;
  @ApiProperty({ example: 'amd64' })
  @Field({ description: 'CPU architecture, e.g. amd64 or arm64.' })
  architecture: string;
  @ApiPropertyOptional({ example: 'v8' })
  @Field({ nullable: true, description: 'CPU variant, e.g. v8 for arm64; null when none is given.' })
  variant?: string;
}

@ObjectType('Repository', { description: 'A repository with at least one tag (empty ones are hidden).' })
export class RepositoryView {
  @ApiProperty({ example: 'team-a/api' }) @Field({ description: 'Full repository name.' }) name: string;
  @ApiProperty() @Field(() => Int, { description: 'Number of tags.' }) tagCount: number;
}

@ObjectType('RepositoryPage', {
  description: 'A page of repositories; pass nextCursor back as cursor for the next page.',
})
export class RepositoryPage {
  @ApiProperty({ type: [RepositoryView] })
  @Field(() => [RepositoryView], { description: 'In the registry’s catalog order.' })
  items: RepositoryView[];
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, {
    nullable: true,
    description: 'Pass as `cursor` for the next page; null at the end.',
  })
  nextCursor: string | null;
}

@ObjectType('Tag', { description: 'A tag and the manifest it points at.' })
export class TagView {
  @ApiProperty() @Field({ description: 'The tag.' }) name: string;
  @ApiProperty({ example: 'sha256:…' })
  @Field({ description: 'Manifest digest, resolved with the full Accept list.' })
  digest: string;
  @ApiProperty()
  @Field({ description: 'Media type of the manifest (image manifest or index).' })
  mediaType: string;
  @ApiProperty({ description: 'Bytes of config and layers; for an index, the sum over its platforms.' })
  @Field(() => Float, {
    description: 'Bytes of config and layers; for an index, the sum over its platforms.',
  })
  size: number;
  @ApiPropertyOptional({
    type: String,
    nullable: true,
    description: 'From the image config; for an index, its newest platform.',
  })
  @Field(() => String, {
    nullable: true,
    description: 'Creation time from the image config; for an index, its newest platform.',
  })
  created: string | null;
  @ApiProperty({ type: [PlatformView], description: 'For an index, every platform it names.' })
  @Field(() => [PlatformView], { description: 'For an index, every platform it names.' })
  platforms: PlatformView[];
  @ApiProperty({ type: [String], example: [], description: MISSING_MANIFESTS })
  @Field(() => [String], { description: MISSING_MANIFESTS })
  missingManifests: string[];
}

@ObjectType('Descriptor', { description: 'A content descriptor: what a manifest points at.' })
export class DescriptorView {
  @ApiProperty() @Field({ description: 'Content digest (sha256:…).' }) digest: string;
  @ApiProperty() @Field({ description: 'Media type of the content.' }) mediaType: string;
  @ApiProperty() @Field(() => Float, { description: 'Size of the content in bytes.' }) size: number;
}

@ObjectType('ChildManifest', {
  description: 'A manifest inside an index (one platform of a multi-arch image).',
})
export class ChildView extends DescriptorView {
  @ApiPropertyOptional({ type: PlatformView, nullable: true })
  @Field(() => PlatformView, {
    nullable: true,
    description: 'As the index gives it; null when it gives none.',
  })
  platform: PlatformView | null;
  @ApiProperty({ description: 'A build attestation, not a runnable image.' })
  @Field({ description: 'A build attestation, not a runnable image.' })
  attestation: boolean;
  @ApiProperty({ description: MISSING_CHILD })
  @Field({ description: MISSING_CHILD })
  missing: boolean;
}

@ObjectType('ImageConfigSummary', {
  description:
    'The image config blob, and what it records (created, os, architecture, variant: null when it could not be read or says nothing).',
})
export class ConfigView extends DescriptorView {
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, { nullable: true, description: 'Creation time the config records.' })
  created: string | null;
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, { nullable: true, description: 'Operating system the config records.' })
  os: string | null;
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, { nullable: true, description: 'CPU architecture the config records.' })
  architecture: string | null;
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, { nullable: true, description: 'CPU variant the config records.' })
  variant: string | null;
}

@ObjectType('Manifest', { description: 'A manifest or index, and every tag that points at the same digest.' })
export class ManifestView {
  @ApiProperty() @Field({ description: 'Registry name.' }) registry: string;
  @ApiProperty() @Field({ description: 'Repository name.' }) repository: string;
  @ApiProperty({ description: 'The tag or digest that was asked for.' })
  @Field({ description: 'The tag or digest that was asked for.' })
  reference: string;
  @ApiProperty()
  @Field({ description: 'Manifest digest, resolved with the full Accept list.' })
  digest: string;
  @ApiProperty()
  @Field({ description: 'Media type of the manifest (image manifest or index).' })
  mediaType: string;
  @ApiProperty()
  @Field(() => Int, { description: 'Bytes of the manifest document itself.' })
  manifestSize: number;
  @ApiProperty()
  @Field(() => Float, {
    description:
      'Bytes of config and layers; for an index, the sum over its platforms (attestations left out).',
  })
  totalSize: number;
  @ApiPropertyOptional({ type: String, nullable: true })
  @Field(() => String, {
    nullable: true,
    description: 'Creation time from the image config; for an index, its newest platform.',
  })
  created: string | null;
  @ApiPropertyOptional({ type: ConfigView, nullable: true })
  @Field(() => ConfigView, { nullable: true, description: 'The image config; null for an index.' })
  config: ConfigView | null;
  @ApiProperty({ type: [DescriptorView] })
  @Field(() => [DescriptorView], { description: 'The image’s layers, in order; empty for an index.' })
  layers: DescriptorView[];
  @ApiProperty({ type: [ChildView] })
  @Field(() => [ChildView], { description: 'The manifests an index names; empty for a single image.' })
  children: ChildView[];
  @ApiProperty({ type: [String], example: [], description: MISSING_MANIFESTS })
  @Field(() => [String], { description: MISSING_MANIFESTS })
  missingManifests: string[];
  @ApiProperty({
    description:
      'Every tag of the repository that points at this digest: deleting the digest removes them all.',
  })
  @Field(() => [String], {
    description:
      'Every tag of the repository that points at this digest: deleting the digest removes them all.',
  })
  tags: string[];
  @ApiProperty({
    type: 'object',
    additionalProperties: true,
    description: 'The manifest document as stored.',
  })
  @Field(() => GraphQLJSONObject, { description: 'The manifest document as stored.' })
  manifest: Record<string, unknown>;
}
