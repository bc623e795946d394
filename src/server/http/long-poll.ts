import type { IncomingMessage, ServerResponse } from 'node:http';
import { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import {
  LinkDownload,
  LinkUpload,
  type ConnectRequest,
  type ConnectResponse,
  type Hello,
} from '../../gen/prfleet/v1/agent.js';
import type { AgentRegistry, AgentSession } from '../agents/index.js';
import type { AgentSessionHandler } from '../agents/session-handler.js';
import { helloWithInvalidUtf8, invalidUtf8Fields, type EdgeSchema } from '../edge.js';
import { peerIdentityOf, type PeerHeaderSource, type PeerIdentity } from '../auth/mtls.js';
import { HttpError, sendText, type HttpContext, type HttpRoutes } from './routes.js';

/** Content type of every long-poll body: one protobuf message (LinkUpload / LinkDownload, agent.proto). */
export const LINK_CONTENT_TYPE = 'application/x-protobuf';

/** Where the link lives on the main port. */
export const LINK_PREFIX = '/agent/v1/';

/** Most messages one poll answer carries (a batch; the rest go with the next poll). */
const MAX_BATCH = 256;

/** Options of {@link registerLongPollLink}. */
export interface LongPollDeps {
  /** The session logic the gRPC stream uses (createAgentService().sessions). */
  readonly sessions: AgentSessionHandler;
  /** The registry (sessions end there; the link hears of it). */
  readonly registry: AgentRegistry;
  /** Logger. */
  readonly log: Logger;
  /** The verified client certificate of a request's connection, as peer headers (mTLS identity). */
  readonly peerOf: (req: IncomingMessage) => PeerHeaderSource;
  /**
   * Longest a poll waits for messages before answering with none, ms; the agent may ask for less (`?wait=`).
   * Keep it under the proxies' read timeouts (nginx: 60 s). @default 20000
   */
  readonly maxWaitMs?: number;
  /** Largest upload (an inventory of many paths), bytes. @default 4 MiB (gRPC's default message limit) */
  readonly maxBodyBytes?: number;
  /** The edge's descriptors: a Hello holding invalid UTF-8 is refused, as on the stream. @default unchecked */
  readonly schema?: EdgeSchema;
}

/** One agent session carried by long polls. */
interface Link {
  readonly session: AgentSession;
  readonly identity: PeerIdentity | undefined;
  /** Ends the poll waiting now, if any, with no messages (a newer poll of the same session supersedes it). */
  supersede: (() => void) | undefined;
}

/** The raw DER of a TLS connection's verified client certificate, or undefined. */
export function verifiedPeerCertificate(req: IncomingMessage): Buffer | undefined {
  const socket = req.socket;
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const raw = socket.getPeerCertificate().raw as Buffer | undefined;
  return raw;
}

function sendMessages(res: ServerResponse, messages: ConnectResponse[]): void {
  const body = LinkDownload.encode({ messages }).finish();
  res.writeHead(200, {
    'content-type': LINK_CONTENT_TYPE,
    'content-length': body.length,
    'cache-control': 'no-store',
  });
  res.end(body);
}

function takeBatch(session: AgentSession): ConnectResponse[] {
  const messages: ConnectResponse[] = [];
  while (messages.length < MAX_BATCH) {
    const next = session.outbox.take();
    if (next === undefined) break;
    messages.push(next);
  }
  return messages;
}

const carriesCommands = (messages: readonly ConnectResponse[]): boolean =>
  messages.some((m) => m.message?.$case === 'command' || m.message?.$case === 'commands');

/**
 * Answers one poll: what the session has queued (up to MAX_BATCH messages), else waits up to `wait` (at most
 * `maxWaitMs`) for something; 410 once the session is over. A poll cut while it waits, or an answer with commands
 * that does not reach the agent, ends the session (its in-flight commands become UNKNOWN).
 */
async function answerPoll(
  link: Link,
  res: ServerResponse,
  ctx: HttpContext,
  registry: AgentRegistry,
  maxWaitMs: number,
): Promise<void> {
  const { session } = link;
  link.supersede?.();
  session.touch();
  const asked = Number(ctx.url.searchParams.get('wait') ?? maxWaitMs);
  const waitMs = Number.isFinite(asked) ? Math.max(0, Math.min(maxWaitMs, asked)) : maxWaitMs;
  let messages = takeBatch(session);
  if (messages.length === 0 && !session.outbox.isClosed && waitMs > 0) {
    let wake = (): void => {};
    let superseded = false;
    const woken = new Promise<void>((resolve) => (wake = resolve));
    const timer = setTimeout(wake, waitMs);
    const supersede = () => {
      superseded = true;
      wake();
    };
    link.supersede = supersede;
    ctx.signal.addEventListener('abort', wake, { once: true });
    await Promise.race([session.outbox.whenReadable(), woken]);
    clearTimeout(timer);
    ctx.signal.removeEventListener('abort', wake);
    if (link.supersede === supersede) link.supersede = undefined;
    if (superseded && !ctx.signal.aborted) {
      // The newer poll takes what comes; this one leaves empty-handed (nothing taken, nothing lost).
      sendMessages(res, []);
      return;
    }
    if (ctx.signal.aborted) {
      // The agent's poll went away while waiting: the link is cut, as a stream whose connection dropped.
      if (!session.isEnded)
        registry.close(session, 'long-poll link cut (the waiting poll was closed)');
      return;
    }
    messages = takeBatch(session);
  }
  session.touch();
  if (messages.length === 0 && session.outbox.isClosed) {
    const reason = session.outbox.closeReason;
    sendText(
      res,
      410,
      `session over${reason instanceof Error ? `: ${reason.message}` : ''}; say Hello again`,
    );
    return;
  }
  if (carriesCommands(messages)) {
    // Commands handed to a response that never reaches the agent are lost: the session ends (they become
    // UNKNOWN) rather than risk the agent getting them later, or never.
    res.once('close', () => {
      if (!res.writableFinished && !session.isEnded)
        registry.close(session, 'long-poll link cut while commands were being sent');
    });
  }
  sendMessages(res, messages);
}

/** The upload of a connect or send: a LinkUpload of the link content type (415 / 400 otherwise). */
async function readUpload(
  req: IncomingMessage,
  ctx: HttpContext,
): Promise<{ body: Uint8Array; messages: ConnectRequest[] }> {
  // Type and subtype are case-insensitive (RFC 9110 §8.3.1); parameters are ignored.
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== LINK_CONTENT_TYPE)
    throw new HttpError(415, `expected content-type ${LINK_CONTENT_TYPE} (a LinkUpload)`);
  const body = await ctx.body();
  try {
    return { body, messages: LinkUpload.decode(body).messages };
  } catch (error) {
    throw new HttpError(400, `not a LinkUpload: ${(error as Error).message}`);
  }
}

/** The upload's first message's Hello, as the stream's decoding makes it (agentRequestDeserializer). */
function helloOf(
  schema: LongPollDeps['schema'],
  hello: Hello,
  body: Uint8Array,
  messages: ConnectRequest[],
): Hello {
  if (schema === undefined) return hello;
  const first = 'messages[0].';
  const fields = invalidUtf8Fields(schema, 'prfleet.v1.LinkUpload', LinkUpload, body, {
    messages,
  }).flatMap((f) => (f.startsWith(`${first}hello.`) ? [f.slice(first.length)] : []));
  return helloWithInvalidUtf8(hello, fields);
}

/**
 * The HTTP/1.1 long-poll agent link (docs/http.md): another carrier of the same AgentService sessions. Hello
 * opens a session through the same {@link AgentSessionHandler} as the stream (certificate identity, draining,
 * replacement of an older session); polls take the session's outbox (commands, cancels, Reconnect) in batches;
 * uploads hand each message to the same handler (inventory screens, allow-lists, result checks). A poll cut
 * by the network ends the session like a cut stream: its in-flight commands become UNKNOWN, nothing is resent.
 */
export function registerLongPollLink(http: HttpRoutes, deps: LongPollDeps): void {
  const { log, registry, sessions } = deps;
  const maxWaitMs = deps.maxWaitMs ?? 20_000;
  const links = new Map<string, Link>();
  registry.onChange((event) => {
    if (event.kind !== 'closed' || event.session.link !== 'long-poll') return;
    // The waiting poll hears of it from the closed outbox (410); only the link is forgotten here.
    links.delete(event.session.sessionId);
  });

  /** The link of `sessionId`, checked against the request's certificate; 410 when the session is over. */
  function linkOf(req: IncomingMessage, sessionId: string): Link {
    const link = links.get(sessionId);
    if (link === undefined || link.session.isEnded)
      throw new HttpError(
        410,
        `session ${sessionId} is over: say Hello again (POST ${LINK_PREFIX}connect)`,
      );
    if (link.identity !== undefined) {
      // Every request of a session must come with the certificate its Hello came with (a revoked one has none).
      if (peerIdentityOf(deps.peerOf(req))?.fingerprint256 !== link.identity.fingerprint256)
        throw new HttpError(403, `session ${sessionId} belongs to another certificate`);
    }
    return link;
  }

  function deliver(link: Link, messages: readonly ConnectRequest[]): void {
    for (const message of messages) {
      try {
        sessions.handle(link.session, message, link.identity);
      } catch (error) {
        // A bug, not the agent's fault: end this session (in-flight commands UNKNOWN), keep the server up.
        registry.close(
          link.session,
          `agent link failed: ${error instanceof Error ? error.message : String(error)}`,
        );
        throw error;
      }
    }
  }

  async function connect(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: HttpContext,
  ): Promise<void> {
    const { body, messages } = await readUpload(req, ctx);
    const [first, ...rest] = messages;
    if (first?.message?.$case !== 'hello')
      throw new HttpError(400, 'the first message of a session must be hello');
    const peerAddress = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const { session, identity } = sessions.open(
      helloOf(deps.schema, first.message.value, body, messages),
      deps.peerOf(req),
      peerAddress,
      'long-poll',
    );
    const link: Link = { session, identity, supersede: undefined };
    links.set(session.sessionId, link);
    deliver(link, rest);
    // Only the Welcome (queued first): commands go out in polls, whose loss is watched (answerPoll).
    const welcome = session.outbox.take();
    sendMessages(res, welcome === undefined ? [] : [welcome]);
  }

  http.register({
    method: 'POST',
    prefix: LINK_PREFIX,
    auth: 'none', // agents authenticate by certificate at Hello, and each request is checked against it
    maxBodyBytes: deps.maxBodyBytes ?? 4 * 1024 * 1024,
    timeoutMs: maxWaitMs + 15_000,
    async handler(req, res, ctx) {
      if (ctx.rest === 'connect') return connect(req, res, ctx);
      const match = /^sessions\/([0-9a-f-]{36})\/(poll|send|close)$/.exec(ctx.rest);
      if (match === null) throw new HttpError(404, `no such path: ${ctx.url.pathname}`);
      const link = linkOf(req, match[1] as string);
      switch (match[2]) {
        case 'poll':
          return answerPoll(link, res, ctx, registry, maxWaitMs);
        case 'send': {
          const { messages } = await readUpload(req, ctx);
          link.session.touch();
          deliver(link, messages);
          res.writeHead(204).end();
          return;
        }
        default:
          registry.close(link.session, 'agent closed its link');
          log.info(
            { agentId: link.session.agentId, sessionId: link.session.sessionId },
            'agent disconnected',
          );
          res.writeHead(204).end();
      }
    },
  });
}
