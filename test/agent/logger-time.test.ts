// The agent's log lines keep pino's isoTime format although createLogger formats the time itself (cheaper in
// RSS than Date.prototype.toISOString; bench/README.md, "Agent weight, fourth pass").
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger, isoTime } from '../../src/common/logger.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('isoTime', () => {
  it.each([
    0,
    1,
    999,
    Date.UTC(2026, 11, 7, 21, 25, 36, 927),
    Date.UTC(2000, 1, 29, 23, 59, 59, 90),
    Date.UTC(1999, 0, 1, 0, 0, 0, 5),
    Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    Date.parse('0033-06-07T08:09:10.011Z'),
  ])('writes what toISOString writes at %i', (now) => {
    vi.useFakeTimers({ now, toFake: ['Date'] });
    expect(isoTime()).toBe(`,"time":"${new Date(now).toISOString()}"`);
  });

  it('is the time of every log line', () => {
    vi.useFakeTimers({ now: Date.UTC(2026, 0, 2, 3, 4, 5, 6), toFake: ['Date'] });
    const lines: string[] = [];
    const log = createLogger({ destination: { write: (line: string) => lines.push(line) } });
    log.info('x');
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({ time: '2026-01-02T03:04:05.006Z' });
  });
});
