import { ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';

/**
 * The query of a REST list read a page at a time, for its DTO to extend with its filters: `limit` (1 to
 * `max`; the list takes `byDefault` when it is absent) and `cursor`, the previous page's nextCursor.
 * (Lists whose arguments GraphQL shares declare theirs with their @Field types.)
 */
export function PageQuery(max: number, byDefault: number) {
  class PageQueryDto {
    @ApiPropertyOptional({ minimum: 1, maximum: max, default: byDefault })
    @IsOptional()
    @Type(() => Number)
    @IsInt()
    @Min(1)
    @Max(max)
    limit?: number;

    @ApiPropertyOptional({ description: 'nextCursor of the previous page' })
    @IsOptional()
    @IsString()
    @MaxLength(2048)
    cursor?: string;
  }
  return PageQueryDto;
}
