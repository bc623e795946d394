import { createLogger, type Logger } from '../../src/common/logger.js';

/** A real logger whose JSON lines the test can read back. */
export function captureLog(level: 'debug' | 'info' | 'warn' = 'info'): {
  log: Logger;
  lines: () => Record<string, unknown>[];
  withMessage: (msg: string | RegExp) => Record<string, unknown>[];
} {
  const raw: string[] = [];
  const log = createLogger({ level, destination: { write: (s: string) => void raw.push(s) } });
  const lines = () => raw.map((s) => JSON.parse(s) as Record<string, unknown>);
  return {
    log,
    lines,
    withMessage: (msg) =>
      lines().filter((l) =>
        typeof msg === 'string' ? l['msg'] === msg : msg.test(String(l['msg'])),
      ),
  };
}
