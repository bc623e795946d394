/**
 * The view's Server-Sent Events stream: a `snapshot` event first (the whole view), then one event per change
 * (`lu`, `agents`, `history`, another `snapshot` after a full re-read). Every event is one line of JSON. A client
 * that reconnects (EventSource does by itself) gets a fresh snapshot, so it never needs to replay: the `id` of
 * each event is this stream's counter, and Last-Event-ID is not needed to resume.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { FleetState, FleetUpdate } from './fleet-state.js';

/** How {@link openEventStream} runs. */
export interface EventStreamOptions {
  readonly state: FleetState;
  /** Asked every `recheckMs`: false (the token was revoked or expired) ends the stream with a `logout` event. */
  readonly stillAllowed: () => Promise<boolean>;
  readonly log: Logger;
  readonly headers: Readonly<Record<string, string>>;
  /** Ends the stream (server shutdown). */
  readonly signal?: AbortSignal;
  /** Called once when the stream ends, with the function that ends it. */
  readonly onEnd: (end: () => void) => void;
  /** @default 15000 */
  readonly keepAliveMs?: number;
  /** @default 30000 */
  readonly recheckMs?: number;
  /** A client that lets this much pile up unread is cut off (it reconnects to a fresh snapshot). @default 4 MiB */
  readonly maxBufferedBytes?: number;
}

/** Starts the stream on `res`; resolves with the function that ends it once the first snapshot is sent. */
export async function openEventStream(
  req: IncomingMessage,
  res: ServerResponse,
  options: EventStreamOptions,
): Promise<() => void> {
  const maxBuffered = options.maxBufferedBytes ?? 4 * 1024 * 1024;
  let sequence = 0;
  let ended = false;
  res.writeHead(200, {
    ...options.headers,
    'content-type': 'text/event-stream; charset=utf-8',
    // Proxies (nginx) must pass events through as they come.
    'x-accel-buffering': 'no',
  });
  res.write('retry: 1000\n\n');
  const timers: NodeJS.Timeout[] = [];
  // Changes during the first snapshot's read are kept and sent after it (applying one twice is harmless).
  const early: FleetUpdate[] = [];
  let live = false;
  const unsubscribe = options.state.subscribe((update) => {
    if (live) pushUpdate(update);
    else early.push(update);
  });
  const end = () => {
    if (ended) return;
    ended = true;
    unsubscribe();
    for (const timer of timers) clearInterval(timer);
    options.signal?.removeEventListener('abort', end);
    res.end();
    options.onEnd(end);
  };
  const write = (event: string, data: unknown) => {
    if (ended) return;
    sequence += 1;
    res.write(`id: ${sequence}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    if (res.writableLength > maxBuffered) {
      options.log.warn({ buffered: res.writableLength }, 'web view: slow event reader cut off');
      end();
    }
  };
  const pushUpdate = (update: FleetUpdate) => {
    switch (update.kind) {
      case 'snapshot':
        return write('snapshot', update.view);
      case 'lu':
        return write('lu', { lu: update.lu, loader: update.loader });
      case 'agents':
        return write('agents', update.agents);
      case 'history':
        return write('history', update.entry);
    }
  };
  req.on('close', end);
  res.on('error', end);
  options.signal?.addEventListener('abort', end, { once: true });
  try {
    write('snapshot', await options.state.snapshot());
  } catch (err) {
    options.log.warn({ err }, 'web view: snapshot for an event stream failed');
    write('failure', { error: 'the fleet could not be read; reconnecting' });
    end();
    return end;
  }
  live = true;
  for (const update of early) pushUpdate(update);
  timers.push(
    setInterval(() => {
      if (!ended) res.write(': keep-alive\n\n');
    }, options.keepAliveMs ?? 15_000),
    setInterval(() => {
      void options.stillAllowed().then((allowed) => {
        if (allowed) return;
        write('logout', { error: 'the token was revoked or has expired' });
        end();
      });
    }, options.recheckMs ?? 30_000),
  );
  return end;
}
