/**
 * Building blocks of the server's zod schemas (its environment, files and relay messages), on zod's mini API (src/common/zod-mini.ts): the
 * server parses its environment at every start, and the classic API is ~470 KB that esbuild cannot trim and
 * Node evaluates whole (~40 ms of CPU before "listening"). The messages are the classic API's.
 */
import * as z from '../common/zod-mini.js';

/** A non-empty string. */
export const nonEmpty = () => z.string().check(z.minLength(1));

/**
 * An integer in [min, max]: a number, or a variable's decimal text; empty or unset text is `fallback`'s (or
 * undefined without one).
 */
const integerIn = (min: number, max: number, fallback?: number) =>
  z.pipe(
    z.pipe(
      z.transform((v: unknown) => {
        const given = v === undefined || v === '' ? fallback : v;
        return typeof given === 'number' ? String(given) : given;
      }),
      z.optional(z.string().check(z.regex(/^-?\d+$/, 'expected a decimal integer'))),
    ),
    z.pipe(
      z.transform((text: string | undefined) => (text === undefined ? undefined : Number(text))),
      z.optional(z.number().check(z.int(), z.minimum(min), z.maximum(max))),
    ),
  );

/**
 * An integer variable in [min, max], `fallback` when unset or empty (as for the store's variables and the
 * agent's). Coercion read blank text as 0 (`PRFLEET_PRINCIPAL_MAX_SESSIONS=` turned the fair share off, `PORT=`
 * took a random port) and `0x100` or `1e3` as numbers nobody wrote: those are refused, naming the variable.
 */
export const envInt = (min: number, max: number, fallback: number) =>
  z.pipe(integerIn(min, max, fallback), z.number());

/** {@link envInt} without a default: unset or empty is undefined. */
export const optionalEnvInt = (min: number, max: number) => integerIn(min, max);

/** true/false, 1/0, yes/no. */
export const booleanFlag = z.pipe(
  z.enum(['true', 'false', '1', '0', 'yes', 'no']),
  z.transform((v) => v === 'true' || v === '1' || v === 'yes'),
);
