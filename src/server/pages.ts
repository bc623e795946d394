import { createHash } from 'node:crypto';
import { invalidArgument, quoteInput } from '../common/errors.js';

/**
 * Listing pages bounded by count AND bytes: one agent reporting thousands of devices with long
 * strings, or history entries with long paths and reasons, must not make a listing larger than a client accepts
 * (gRPC's default 4 MiB receive limit), for itself or anyone else.
 */

/** Default byte budget of one page: a quarter of the 4 MiB a gRPC client accepts by default. */
export const DEFAULT_PAGE_BYTES = 1024 * 1024;

/** Items per page of the listings paged by count and bytes, when page_size is 0, and the most one may ask for. */
export const LIST_PAGE_SIZE = { default: 1000, max: 10_000 } as const;

/** Bytes a repeated message field adds around each element: its tag and length prefix (at most). */
const ELEMENT_OVERHEAD = 6;

/** The page a request asks for. */
export interface PageRequest {
  readonly pageSize: number;
  readonly pageToken: string;
}

/** How one listing pages. */
export interface PageRules<T> {
  /** Items when page_size is 0. */
  readonly defaultSize: number;
  /** Largest page_size accepted. */
  readonly maxSize: number;
  /** A page stops before its elements would pass this many bytes (it always holds one). */
  readonly budgetBytes: number;
  /** The item's sort key: unique, and the list is sorted by it (code-unit order). */
  readonly keyOf: (item: T) => string;
  /** The item's encoded size, bytes. */
  readonly sizeOf: (item: T) => number;
}

/** Longest page_token accepted at the edge (docs/api-limits.md). */
const MAX_TOKEN_LENGTH = 128;

/**
 * The token of the page after the item with sort key `key`, whose successor is at `index` of the listing:
 * `k<base64url of the key>` (exact whatever changed in between), or for a key too long for a token,
 * `h<index>.<hash of the key>` (found again by its hash; by index if it is gone, when an item may be skipped or
 * repeated).
 */
export function pageTokenAfter(key: string, index: number): string {
  const exact = `k${Buffer.from(key).toString('base64url')}`;
  return exact.length <= MAX_TOKEN_LENGTH ? exact : `h${index}.${hashOf(key)}`;
}

function hashOf(key: string): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

/** Index of the first item of the page `token` names in `items`. */
function startOf<T>(items: readonly T[], token: string, keyOf: (item: T) => string): number {
  if (token === '') return 0;
  const bad = () =>
    invalidArgument('page_token', `${quoteInput(token)} is not a token this listing returned`);
  if (token.startsWith('k') && /^k[A-Za-z0-9_-]*$/.test(token)) {
    const after = Buffer.from(token.slice(1), 'base64url').toString();
    const i = items.findIndex((item) => keyOf(item) > after);
    return i < 0 ? items.length : i;
  }
  const hashed = /^h([0-9]{1,9})\.([0-9a-f]{16})$/.exec(token);
  if (hashed === null) throw bad();
  const index = Number(hashed[1]);
  const hash = hashed[2];
  const at = (i: number) => i >= 0 && i < items.length && hashOf(keyOf(items[i] as T)) === hash;
  if (at(index - 1)) return index;
  const found = items.findIndex((item) => hashOf(keyOf(item)) === hash);
  return found >= 0 ? found + 1 : Math.min(index, items.length);
}

/**
 * The page of `items` (sorted by `rules.keyOf`) that `request` asks for: at most page_size items, and stopping
 * before the budget (one item always goes, so a listing always advances). INVALID_ARGUMENT for a page_size over
 * the maximum or a token no listing returned.
 */
export function pageOf<T>(
  items: readonly T[],
  request: PageRequest,
  rules: PageRules<T>,
): { page: T[]; nextPageToken: string } {
  const size = request.pageSize === 0 ? rules.defaultSize : request.pageSize;
  if (size > rules.maxSize)
    throw invalidArgument('page_size', `${size} is more than ${rules.maxSize}`);
  const start = startOf(items, request.pageToken, rules.keyOf);
  const page: T[] = [];
  let bytes = 0;
  let i = start;
  for (; i < items.length && page.length < size; i++) {
    const item = items[i] as T;
    const cost = rules.sizeOf(item) + ELEMENT_OVERHEAD;
    if (page.length > 0 && bytes + cost > rules.budgetBytes) break;
    bytes += cost;
    page.push(item);
  }
  const last = page.at(-1);
  return {
    page,
    nextPageToken:
      i < items.length && last !== undefined ? pageTokenAfter(rules.keyOf(last), i) : '',
  };
}

/**
 * Takes items from the front of `items` while they fit `budgetBytes` (at least one): for listings paged by
 * their own key (ListHistory's seq), which only need the cut.
 */
export function fitBudget<T>(
  items: readonly T[],
  budgetBytes: number,
  sizeOf: (item: T) => number,
): T[] {
  const kept: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const cost = sizeOf(item) + ELEMENT_OVERHEAD;
    if (kept.length > 0 && bytes + cost > budgetBytes) break;
    bytes += cost;
    kept.push(item);
  }
  return kept;
}
