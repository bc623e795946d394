// Listing pages (src/server/pages.ts): bounded by count and bytes, always advancing, resumable by key whatever
// changed between two pages, and by hash for keys too long for a token.
import { Status } from 'nice-grpc-common';
import { describe, expect, it } from 'vitest';
import { pageOf, type PageRules } from '../../src/server/pages.js';

const rules = (budgetBytes: number): PageRules<string> => ({
  defaultSize: 3,
  maxSize: 10,
  budgetBytes,
  keyOf: (s) => s,
  sizeOf: (s) => s.length,
});

/** Every page from the first, with the list given by `listAt(pageIndex)` (it may change between pages). */
function walk(listAt: (page: number) => string[], r: PageRules<string>, pageSize = 0) {
  const pages: string[][] = [];
  let pageToken = '';
  do {
    const { page, nextPageToken } = pageOf(listAt(pages.length), { pageSize, pageToken }, r);
    pages.push(page);
    pageToken = nextPageToken;
  } while (pageToken !== '' && pages.length < 100);
  return pages;
}

describe('pageOf', () => {
  const items = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];

  it('cuts by count (page_size, else the default) and by bytes, one item at least', () => {
    expect(walk(() => items, rules(1000))).toEqual([['a', 'b', 'c'], ['d', 'e', 'f'], ['g']]);
    expect(walk(() => items, rules(1000), 5)).toEqual([
      ['a', 'b', 'c', 'd', 'e'],
      ['f', 'g'],
    ]);
    // 1 byte + 6 of framing per item: a 14-byte budget holds two.
    expect(walk(() => items, rules(14), 10).map((p) => p.length)).toEqual([2, 2, 2, 1]);
    // An item over the budget still goes, alone: the listing advances.
    const big = ['x'.repeat(50), 'y'.repeat(50)];
    expect(walk(() => big, rules(10), 10)).toEqual([[big[0]], [big[1]]]);
  });

  it('resumes after the last key even when items come and go between pages', () => {
    const pages = walk((n) => (n === 0 ? items : ['0', 'a', 'c', 'cc', 'd', 'g']), rules(1000));
    // 'b' left and '0', 'cc' came after the first page: the second starts after 'c', where the first ended.
    expect(pages).toEqual([
      ['a', 'b', 'c'],
      ['cc', 'd', 'g'],
    ]);
  });

  it('uses a hashed position for keys too long for a 128-character token', () => {
    const long = ['k'.repeat(200) + '1', 'k'.repeat(200) + '2', 'k'.repeat(200) + '3'];
    const r = { ...rules(1_000_000), defaultSize: 1 };
    const first = pageOf(long, { pageSize: 0, pageToken: '' }, r);
    expect(first.nextPageToken).toMatch(/^h1\.[0-9a-f]{16}$/);
    expect(first.nextPageToken.length).toBeLessThanOrEqual(128);
    expect(pageOf(long, { pageSize: 0, pageToken: first.nextPageToken }, r).page).toEqual([
      long[1],
    ]);
    // An item inserted before the last key: found again by its hash.
    const moved = ['a', ...long];
    expect(pageOf(moved, { pageSize: 0, pageToken: first.nextPageToken }, r).page).toEqual([
      long[1],
    ]);
  });

  it('refuses a page_size over the maximum and a token it did not hand out', () => {
    expect(() => pageOf(items, { pageSize: 11, pageToken: '' }, rules(1000))).toThrow(
      expect.objectContaining({ code: Status.INVALID_ARGUMENT }) as unknown,
    );
    for (const pageToken of ['x', 'h1', 'h1.zz', 'k!'])
      expect(() => pageOf(items, { pageSize: 0, pageToken }, rules(1000))).toThrow(
        /page_token|not a token/,
      );
  });
});
