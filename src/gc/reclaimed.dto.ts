import { Field, Float, GraphQLISODateTime, Int, ObjectType, registerEnumType } from '@nestjs/graphql';

export enum ReclaimedBucket {
  day = 'day',
  week = 'week',
}
registerEnumType(ReclaimedBucket, {
  name: 'ReclaimedBucket',
  description: 'day, or ISO week (from Monday); both in UTC.',
  valuesMap: {
    day: { description: 'One row per registry per UTC day.' },
    week: { description: 'One row per registry per ISO week, Monday to Sunday, in UTC.' },
  },
});

@ObjectType('ReclaimedSpace', {
  description:
    'What cleaning up brought back on one registry in one day or week: bytes freed by garbage collection, and manifests deleted by deletion requests and by GC.',
})
export class ReclaimedSpaceView {
  @Field({ description: 'Registry name.' }) registry: string;
  @Field(() => GraphQLISODateTime, { description: 'Start of the day or week (UTC).' }) period: Date;
  @Field(() => Float, {
    description: 'Storage freed by successful GC runs (measured before/after; dry runs excluded).',
  })
  bytesFreed: number;
  @Field(() => Int, { description: 'Successful, non-dry GC runs that ended in the period.' }) gcRuns: number;
  @Field(() => Float, { description: 'Blobs the GC runs deleted.' }) blobsDeleted: number;
  @Field(() => Float, {
    description:
      'Manifests deleted by deletion requests (items of kind manifest that succeeded; not those already gone).',
  })
  manifestsDeletedByRequests: number;
  @Field(() => Float, { description: 'Manifests the GC runs deleted (untagged ones, with deleteUntagged).' })
  manifestsDeletedByGc: number;
  @Field(() => Float, { description: 'manifestsDeletedByRequests + manifestsDeletedByGc.' })
  manifestsDeleted: number;
  @Field(() => Float, { description: 'Tags removed alone by tag-only deletes (the images stayed).' })
  tagsDeleted: number;
}
