/**
 * Building blocks of the server's zod schemas (its environment, files and relay messages), on zod's mini API (src/common/zod-mini.ts): the
 * server parses its environment at every start, and the classic API is ~470 KB that esbuild cannot trim and
 * Node evaluates whole (~40 ms of CPU before "listening"). The messages are the classic API's.
 */
import * as z from '../common/zod-mini.js';

/** A non-empty string. */
export const nonEmpty = () => z.string().check(z.minLength(1));

/** An integer in [min, max], given as a string (an environment variable) or a number. */
export const envInt = (min: number, max: number) =>
  z.coerce.number().check(z.int(), z.minimum(min), z.maximum(max));

/** true/false, 1/0, yes/no. */
export const booleanFlag = z.pipe(
  z.enum(['true', 'false', '1', '0', 'yes', 'no']),
  z.transform((v) => v === 'true' || v === '1' || v === 'yes'),
);
