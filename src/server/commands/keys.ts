import { ANONYMOUS } from '../history.js';

/**
 * The journal key of a caller's idempotency key: scoped by the principal, so another principal's key reveals
 * nothing and blocks nothing. Unauthenticated callers are one principal (`anonymous`), whose keys are journaled
 * as given. encodeURIComponent never yields `|`, so no two (principal, key) pairs share a journal key.
 */
export function scopedKey(principal: string, key: string): string {
  return principal === ANONYMOUS ? key : `${encodeURIComponent(principal)}|${key}`;
}
