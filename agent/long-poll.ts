import type { Agent as HttpAgent, IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import {
  LinkDownload,
  LinkUpload,
  type AgentServiceClient,
  type ConnectRequest,
  type ConnectResponse,
  type DeepPartial,
} from '../src/gen/prfleet/v1/agent.js';
import { AsyncQueue } from '../src/common/async-queue.js';

// node:http and node:https come through process.getBuiltinModule when a long-poll client is made: a static ES
// import of node:http evaluates every export of it, among them the lazy WebSocket getters that load undici,
// perf_hooks and worker_threads (~4 MiB of an idle agent's RSS, for a link most agents never use).
const http = () => process.getBuiltinModule('node:http');
const https = () => process.getBuiltinModule('node:https');

/** Content type of the link's bodies (agent.proto LinkUpload / LinkDownload). */
const CONTENT_TYPE = 'application/x-protobuf';

/** What a session needs of its link: AgentService.Connect's shape (the gRPC client, or {@link createLongPollClient}). */
export type AgentLinkClient = Pick<AgentServiceClient, 'connect'>;

/** Options of {@link createLongPollClient}. */
export interface LongPollClientOptions {
  /** `http(s)://host:port` (a path prefix is kept: a proxy may serve the server under one), or `host:port`. */
  readonly server: string;
  /** Use http:// for a bare `host:port`. @default false (https) */
  readonly plaintext?: boolean;
  /** TLS: CA to trust instead of the system roots, and the agent's client certificate (mTLS). */
  readonly tls?: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer };
  /** How long each poll asks the server to wait for commands, ms. @default 20000 */
  readonly waitMs?: number;
  /** Longest wait for any answer beyond the poll's own wait, ms. @default 15000 */
  readonly slackMs?: number;
  /** Logger. */
  readonly log: Logger;
}

/** A long-poll client: Connect over HTTP/1.1, plus close() for its kept-alive connections. */
export interface LongPollClient extends AgentLinkClient {
  /** Closes idle connections (the agent stopped). */
  close(): void;
}

/** The server ended the session (HTTP 410): like a stream ending OK, the agent says Hello again. */
class SessionOver extends Error {}

/** An answer from a proxy that could not reach the server (502/503/504 through nginx). */
class ProxyError extends Error {}

/**
 * Whether a failed send or poll is worth one more try: the connection failed (a kept-alive connection the other
 * side had just closed) or a proxy could not pass it on. Both are safe to repeat: results the server already
 * settled are dropped as stray, and a poll the server saw cut has ended the session (the next one gets 410).
 */
const retryable = (e: unknown): boolean =>
  e instanceof ProxyError || (e instanceof Error && 'code' in e && typeof e.code === 'string');

/** Base URL of the link for a server address. */
export function linkBaseUrl(server: string, plaintext: boolean): URL {
  const url = new URL(
    server.includes('://') ? server : `${plaintext ? 'http' : 'https'}://${server}`,
  );
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return new URL('agent/v1/', url);
}

/** How one client reaches the link: base URL and kept-alive connections. */
interface LinkHttp {
  readonly base: URL;
  readonly secure: boolean;
  readonly agent: HttpAgent;
  readonly log: Logger;
}

/** Reads an answer: decoded messages (none for 204); SessionOver on 410, ProxyError for a proxy's 502-504. */
function readAnswer(
  res: IncomingMessage,
  path: string,
  resolve: (messages: ConnectResponse[]) => void,
  reject: (e: Error) => void,
): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('error', reject);
  res.on('end', () => {
    const data = Buffer.concat(chunks);
    const status = res.statusCode ?? 0;
    if (status === 204) return resolve([]);
    if (status === 200 && (res.headers['content-type'] ?? '').startsWith(CONTENT_TYPE)) {
      try {
        resolve(LinkDownload.decode(data).messages);
      } catch (e) {
        reject(new Error(`${path}: undecodable answer: ${(e as Error).message}`));
      }
      return;
    }
    const text = data.toString('utf8', 0, Math.min(data.length, 500)).trim();
    const why = `${path}: HTTP ${status}${text === '' ? '' : `: ${text}`}`;
    if (status === 410) reject(new SessionOver(text));
    else if (status >= 502 && status <= 504 && res.headers['prfleet-server'] === undefined)
      reject(new ProxyError(why));
    else reject(new Error(why));
  });
}

/** POSTs `messages` (a LinkUpload) to `path` under the link's base URL. */
function post(
  link: LinkHttp,
  path: string,
  messages: readonly DeepPartial<ConnectRequest>[],
  signal: AbortSignal,
  timeoutMs: number,
): Promise<ConnectResponse[]> {
  const body = LinkUpload.encode({ messages: messages as ConnectRequest[] }).finish();
  const url = new URL(path, link.base);
  return new Promise((resolve, reject) => {
    const req = (link.secure ? https() : http()).request(
      url,
      {
        method: 'POST',
        agent: link.agent,
        signal,
        timeout: timeoutMs,
        headers: {
          'content-type': CONTENT_TYPE,
          'content-length': body.length,
          accept: CONTENT_TYPE,
        },
      },
      (res: IncomingMessage) => readAnswer(res, url.pathname, resolve, reject),
    );
    req.on('timeout', () =>
      req.destroy(new Error(`${url.pathname}: no answer within ${timeoutMs} ms`)),
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** {@link post} with one more try after a retryable failure (never for Hello: a new session would result). */
async function postAgain(
  link: LinkHttp,
  path: string,
  messages: readonly DeepPartial<ConnectRequest>[],
  signal: AbortSignal,
  timeoutMs: number,
): Promise<ConnectResponse[]> {
  try {
    return await post(link, path, messages, signal, timeoutMs);
  } catch (e) {
    if (signal.aborted || !retryable(e)) throw e;
    link.log.debug({ err: e, path }, 'long-poll request failed: trying once more');
    return post(link, path, messages, signal, timeoutMs);
  }
}

/** Polls until the session ends (410: `into` closes) or a request fails (rejects). */
async function pollLoop(
  link: LinkHttp,
  session: string,
  timing: { waitMs: number; slackMs: number },
  signal: AbortSignal,
  into: AsyncQueue<ConnectResponse>,
): Promise<void> {
  try {
    while (!signal.aborted && !into.isClosed) {
      const path = `${session}poll?wait=${timing.waitMs}`;
      const messages = await postAgain(link, path, [], signal, timing.waitMs + timing.slackMs);
      for (const m of messages) into.push(m);
    }
  } catch (e) {
    if (e instanceof SessionOver) into.close();
    else throw e;
  }
}

/** Sends the agent's messages in order, one request at a time, with what queued up meanwhile. */
async function uploadLoop(
  link: LinkHttp,
  session: string,
  iterator: AsyncIterator<DeepPartial<ConnectRequest>>,
  signal: AbortSignal,
  slackMs: number,
): Promise<void> {
  const pending: DeepPartial<ConnectRequest>[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  void (async () => {
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
      pending.push(next.value);
      wake?.();
    }
    ended = true;
    wake?.();
  })();
  while (!signal.aborted) {
    if (pending.length === 0) {
      if (ended) break;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      continue;
    }
    const batch = pending.splice(0, pending.length);
    await postAgain(link, `${session}send`, batch, signal, slackMs);
  }
  // The agent half-closed: the server ends the session, and the waiting poll gets 410.
  if (!signal.aborted) await post(link, `${session}close`, [], signal, slackMs);
}

/**
 * AgentService.Connect carried by HTTP/1.1 long polling (docs/http.md), for hosts whose proxies pass no HTTP/2:
 * the session above it (agent/session.ts) is the same as on the stream. Hello → POST connect (answered with the
 * Welcome); then one poll at a time (POST …/poll, answered with the queued messages or none after `waitMs`), and
 * the agent's messages POSTed in order (…/send), those queued meanwhile together. The request iterable ending
 * (the agent half-closes) → POST …/close, and the responses end once the server closes the session (410).
 */
export function createLongPollClient(options: LongPollClientOptions): LongPollClient {
  const base = linkBaseUrl(options.server, options.plaintext ?? false);
  const secure = base.protocol === 'https:';
  const agent = secure
    ? new (https().Agent)({
        keepAlive: true,
        maxSockets: 4,
        ALPNProtocols: ['http/1.1'],
        ...(options.tls?.ca === undefined ? {} : { ca: options.tls.ca }),
        ...(options.tls?.cert === undefined ? {} : { cert: options.tls.cert }),
        ...(options.tls?.key === undefined ? {} : { key: options.tls.key }),
      })
    : new (http().Agent)({ keepAlive: true, maxSockets: 4 });
  const link: LinkHttp = { base, secure, agent, log: options.log };
  const timing = { waitMs: options.waitMs ?? 20_000, slackMs: options.slackMs ?? 15_000 };

  async function* connect(
    requests: AsyncIterable<DeepPartial<ConnectRequest>>,
    callOptions?: { signal?: AbortSignal },
  ): AsyncGenerator<ConnectResponse> {
    const stop = new AbortController();
    const outer = callOptions?.signal;
    const onAbort = () => stop.abort(outer?.reason);
    if (outer?.aborted) onAbort();
    outer?.addEventListener('abort', onAbort, { once: true });
    const signal = stop.signal;
    const received = new AsyncQueue<ConnectResponse>(Infinity);
    let failure: Error | undefined;
    const fail = (e: unknown) => {
      if (received.isClosed) return;
      if (!(e instanceof SessionOver)) failure = e instanceof Error ? e : new Error(String(e));
      received.close();
    };
    const iterator = requests[Symbol.asyncIterator]();
    try {
      const hello = await iterator.next();
      if (hello.done === true) return;
      const welcome = await post(link, 'connect', [hello.value], signal, timing.slackMs);
      const first = welcome[0]?.message;
      if (first?.$case !== 'welcome')
        throw new Error('connect: the server did not answer with a Welcome');
      const session = `sessions/${first.value.sessionId}/`;
      for (const m of welcome) received.push(m);
      void pollLoop(link, session, timing, signal, received).catch(fail);
      void uploadLoop(link, session, iterator, signal, timing.slackMs).catch(fail);
      for await (const message of received) yield message;
      if (failure !== undefined) throw failure;
    } finally {
      outer?.removeEventListener('abort', onAbort);
      stop.abort(); // the other loop and any request in flight end with the session
    }
  }

  return {
    connect: connect as AgentLinkClient['connect'],
    close: () => agent.destroy(),
  };
}
