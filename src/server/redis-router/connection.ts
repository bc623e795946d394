import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';

/**
 * Opens one ioredis connection whose errors are logged (with `name`) instead of thrown: ioredis reconnects by
 * itself, and an 'error' event nobody listens to would crash the process.
 */
export function connectRedis(url: string, options: RedisOptions, log: Logger, name: string): Redis {
  const connection = new Redis(url, options);
  connection.on('error', (err: Error) =>
    log.warn({ err, connection: name }, 'redis connection error'),
  );
  return connection;
}

/** Runs a background task unless the owner is closed; a failure is logged, never an unhandled rejection. */
export type Background = (task: () => Promise<unknown>, what: string) => void;

/** A {@link Background} for an owner that stops starting tasks once `isClosed()` says so. */
export function backgroundRunner(log: Logger, isClosed: () => boolean): Background {
  return (task, what) => {
    if (isClosed()) return;
    task().catch((err: unknown) => log.warn({ err }, `${what} failed`));
  };
}
