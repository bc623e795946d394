import { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** What the Redis wake-up needs of the events (FleetEvents). */
export interface WakeTarget {
  onAppended(listener: () => void): () => void;
  wakeFromRemote(): void;
}

/** The running wake-up. */
export interface RedisWake {
  /** Resolves once subscribed. */
  readonly ready: Promise<void>;
  /** Unsubscribes and closes both connections. */
  close(): Promise<void>;
}

/**
 * Tells the other instances sharing `keyPrefix` that this one appended events, so their watchers read the log now
 * instead of at their next poll. Only a wake-up: the store holds the events, a lost message costs one poll
 * interval, never an event. Appends close together make one message.
 */
export function startRedisWake(options: {
  readonly redisUrl: string;
  readonly keyPrefix: string;
  readonly instanceId: string;
  readonly events: WakeTarget;
  readonly log: Logger;
}): RedisWake {
  const channel = `${options.keyPrefix}events`;
  const pub = new Redis(options.redisUrl, { maxRetriesPerRequest: 1 });
  const sub = new Redis(options.redisUrl);
  for (const [name, connection] of [
    ['events publisher', pub],
    ['events subscriber', sub],
  ] as const) {
    connection.on('error', (err: Error) =>
      options.log.warn({ err, connection: name }, 'redis connection error'),
    );
  }
  let queued = false;
  const stop = options.events.onAppended(() => {
    if (queued) return;
    queued = true;
    setImmediate(() => {
      queued = false;
      pub.publish(channel, options.instanceId).catch((err: unknown) => {
        options.log.debug({ err }, 'events: wake-up not published (watchers poll)');
      });
    });
  });
  sub.on('message', (from: string, message: string) => {
    if (from === channel && message !== options.instanceId) options.events.wakeFromRemote();
  });
  const ready = sub.subscribe(channel).then(() => undefined);
  return {
    ready,
    async close() {
      stop();
      await Promise.allSettled([sub.quit(), pub.quit()]);
    },
  };
}
