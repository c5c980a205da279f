import { IsDefined, ValidateIf } from 'class-validator';

/**
 * A field that may be left out but not given as null, where null would mean nothing (a secret, a list of
 * event types, a flag, a role): `@IsOptional()` lets null through, past every other check, to code that
 * takes it for a value. Here a present field is validated, null included, and null is refused with 400
 * VALIDATION_FAILED. Where null means something (clearing a registry filter or a description), keep
 * `@IsOptional()`.
 */
export function IsOmittable(): PropertyDecorator {
  return (target, property) => {
    ValidateIf((_object, value) => value !== undefined)(target, property);
    IsDefined({ message: ({ property: name }) => `${name} may be left out, but not null` })(target, property);
  };
}
