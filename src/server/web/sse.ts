/**
 * The view's Server-Sent Events stream: a `snapshot` event first (the whole view), then one event per change
 * of the picture (`lu`, `agents`, `history`, another `snapshot` after a full re-read), and, with the fleet event
 * log, every fleet event as `fleet` with the event's cursor as its `id`. A client that reconnects (EventSource
 * does by itself, sending Last-Event-ID) gets a fresh snapshot and the fleet events after the cursor it last
 * saw: nothing it showed in its event list is lost or repeated. Every event is one line of JSON.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { eventToJson } from '../../common/event-json.js';
import {
  CursorAheadError,
  CursorExpiredError,
  WatcherTooSlowError,
  type EventLog,
} from '../events/index.js';
import type { FleetState, FleetUpdate } from './fleet-state.js';

/** How {@link openEventStream} runs. */
export interface EventStreamOptions {
  readonly state: FleetState;
  /** The fleet event log, forwarded as `fleet` events by cursor. @default none */
  readonly events?: Pick<EventLog, 'subscribe' | 'head'> | undefined;
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

/** The cursor a reconnecting EventSource sends, when it is one. */
function lastEventId(req: IncomingMessage): number | undefined {
  const header = req.headers['last-event-id'];
  return typeof header === 'string' && /^[0-9]{1,15}$/.test(header) ? Number(header) : undefined;
}

/** The event name and data of a fleet-view update. */
function updateEvent(update: FleetUpdate): [event: string, data: unknown] {
  switch (update.kind) {
    case 'snapshot':
      return ['snapshot', update.view];
    case 'lu':
      return ['lu', { lu: update.lu, loader: update.loader }];
    case 'agents':
      return ['agents', update.agents];
    case 'history':
      return ['history', update.entry];
  }
}

/** Starts the stream on `res`; resolves with the function that ends it once the first snapshot is sent. */
export async function openEventStream(
  req: IncomingMessage,
  res: ServerResponse,
  options: EventStreamOptions,
): Promise<() => void> {
  const maxBuffered = options.maxBufferedBytes ?? 4 * 1024 * 1024;
  const stop = new AbortController();
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
    stop.abort();
    unsubscribe();
    for (const timer of timers) clearInterval(timer);
    options.signal?.removeEventListener('abort', end);
    res.end();
    options.onEnd(end);
  };
  /** One event; `id` only on fleet events (and the first snapshot), so Last-Event-ID is always a cursor. */
  const write = (event: string, data: unknown, id?: string) => {
    if (ended) return;
    res.write(
      `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`,
    );
    if (res.writableLength > maxBuffered) {
      options.log.warn({ buffered: res.writableLength }, 'web view: slow event reader cut off');
      end();
    }
  };
  const pushUpdate = (update: FleetUpdate) => write(...updateEvent(update));
  req.on('close', end);
  res.on('error', end);
  options.signal?.addEventListener('abort', end, { once: true });
  const resumeAfter = lastEventId(req);
  try {
    // The head before the read: the snapshot shows at least everything up to it.
    const head = await options.events?.head();
    const view = await options.state.snapshot();
    write(
      'snapshot',
      view,
      resumeAfter === undefined && head !== undefined ? String(head) : undefined,
    );
    live = true;
    for (const update of early) pushUpdate(update);
    if (options.events !== undefined) {
      void forwardEvents(options.events, resumeAfter ?? head, write, stop.signal).then(
        (tooSlow) => {
          if (tooSlow) end(); // the client reconnects and resumes after its last cursor
        },
        (err: unknown) => {
          options.log.warn({ err }, 'web view: fleet events ended');
          end();
        },
      );
    }
  } catch (err) {
    options.log.warn({ err }, 'web view: snapshot for an event stream failed');
    write('failure', { error: 'the fleet could not be read; reconnecting' });
    end();
    return end;
  }
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

/**
 * Writes every fleet event after `after` as `fleet` (id: its cursor) until `signal` aborts. A cursor the log no
 * longer has (retention, another database) gets a `reset` event and the events from the head on. Resolves true
 * when the reader fell too far behind.
 */
async function forwardEvents(
  events: Pick<EventLog, 'subscribe'>,
  after: number | undefined,
  write: (event: string, data: unknown, id?: string) => void,
  signal: AbortSignal,
): Promise<boolean> {
  let from = after;
  for (;;) {
    try {
      for await (const event of events.subscribe({ after: from, signal })) {
        write('fleet', eventToJson(event), String(event.cursor));
      }
      return false;
    } catch (err) {
      if (signal.aborted) return false;
      if (err instanceof WatcherTooSlowError) return true;
      if (!(err instanceof CursorExpiredError || err instanceof CursorAheadError)) throw err;
      write('reset', { error: err.message });
      from = undefined;
    }
  }
}
