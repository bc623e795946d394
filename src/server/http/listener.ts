import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import {
  createServer as createTlsServer,
  type SecureContextOptions,
  type TLSSocket,
} from 'node:tls';
import { experimental, ServerCredentials, type Server as GrpcServer } from '@grpc/grpc-js';
import type { Logger } from 'pino';

/** The HTTP/2 connection preface every gRPC client (h2c "prior knowledge") starts a plaintext connection with. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** Options of {@link listenOnePort}. */
export interface OnePortOptions {
  /** The grpc-js server (services added, not bound): it gets the HTTP/2 connections. */
  readonly grpc: GrpcServer;
  /** The server's credentials, as given to listen(): TLS (with its interceptors) or insecure. */
  readonly credentials: ServerCredentials;
  /** Answers HTTP/1.1 requests. */
  readonly http: (req: IncomingMessage, res: ServerResponse) => void;
  /** Logger. */
  readonly log: Logger;
  /**
   * A plaintext connection that has not sent enough bytes to tell its protocol by then is closed, and a TLS
   * connection that has not finished its handshake. @default 10000
   */
  readonly sniffTimeoutMs?: number;
}

/** The bound port of one server: gRPC (HTTP/2) and HTTP/1.1 on one listening socket. */
export interface OnePortListener {
  /** The bound port. */
  readonly port: number;
  /** True when the port serves TLS (ALPN decides the protocol). */
  readonly tls: boolean;
  /** Stops accepting connections and closes idle HTTP/1.1 connections (gRPC is shut down by its server). */
  close(): Promise<void>;
  /** Closes every HTTP/1.1 connection now. */
  destroyHttp(): void;
}

/** Splits 'host:port' / '[v6]:port' as grpc-js and nice-grpc accept them. */
export function parseAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  if (colon < 0) throw new Error(`listen address ${JSON.stringify(address)}: expected host:port`);
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = Number(address.slice(colon + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new Error(`listen address ${JSON.stringify(address)}: invalid port`);
  return { host: host === '' ? '0.0.0.0' : host, port };
}

/** The credentials' TLS context, waiting (bounded) for a certificate provider's first update. */
async function secureContextOf(credentials: ServerCredentials): Promise<SecureContextOptions> {
  const now = credentials._getSecureContextOptions();
  if (now !== null) return now;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      credentials._removeWatcher(watch);
      reject(new Error('TLS credentials did not load within 5 s'));
    }, 5_000);
    const watch = (options: SecureContextOptions | null) => {
      if (options === null) return;
      clearTimeout(timer);
      credentials._removeWatcher(watch);
      resolve(options);
    };
    credentials._addWatcher(watch);
  });
}

/**
 * Listens on `address` and serves both protocols on that one port. TLS: one tls.Server offering ALPN h2 and
 * http/1.1; h2 connections go to grpc-js (decrypted, with the credentials' interceptors, so the mTLS peer
 * identity is read from the TLS socket), the others to the HTTP/1.1 handler. Plaintext: the first
 * bytes decide: the HTTP/2 preface → grpc-js, anything else → HTTP/1.1.
 */
export async function listenOnePort(
  address: string,
  options: OnePortOptions,
): Promise<OnePortListener> {
  const { credentials, log } = options;
  const secure = credentials._isSecure();
  // grpc-js gets plaintext sockets either way: with TLS they are the decrypted TLSSockets (its auth context
  // reads their peer certificate); the credentials' interceptors (peer identity) stay attached.
  const interceptors = credentials._getInterceptors();
  const injector = options.grpc.createConnectionInjector(
    !secure
      ? credentials
      : interceptors.length === 0
        ? ServerCredentials.createInsecure()
        : experimental.createServerCredentialsWithInterceptors(
            ServerCredentials.createInsecure(),
            interceptors,
          ),
  );
  // Once closing, every answer (long polls answered late included) ends its connection: clients that keep
  // theirs alive and busy would otherwise hold the port open forever.
  let closing = false;
  const answering = new Set<ServerResponse>();
  const http = createHttpServer(
    {
      // The request head within the sniff timeout (at most 10 s), checked every second: node's default check
      // every 30 s let a client dripping header lines (slowloris) hold a connection up to 40 s.
      headersTimeout: options.sniffTimeoutMs ?? 10_000,
      connectionsCheckingInterval: Math.min(1_000, options.sniffTimeoutMs ?? 10_000),
      requestTimeout: 30_000,
      keepAliveTimeout: 5_000,
      maxHeaderSize: 16 * 1024,
    },
    (req, res) => {
      if (closing) res.shouldKeepAlive = false;
      answering.add(res);
      res.once('close', () => answering.delete(res));
      options.http(req, res);
    },
  );
  // node:http tracks its connections (idle ones for close, and the headers/request timeouts) only from its
  // 'listening' event; this server never listens itself (it is handed connections), so it is told it does.
  http.emit('listening');
  http.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    log.debug({ err: error }, 'HTTP client error');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  let listener: NetServer;
  if (secure) {
    listener = await createTlsListener(
      credentials,
      log,
      options.sniffTimeoutMs ?? 10_000,
      (socket) => {
        if (socket.alpnProtocol === 'h2') injector.injectConnection(socket);
        else http.emit('connection', socket);
      },
    );
  } else {
    listener = createNetServer((socket) => {
      sniff(socket, options.sniffTimeoutMs ?? 10_000, (isH2) => {
        if (isH2) injector.injectConnection(socket);
        else http.emit('connection', socket);
      });
    });
  }
  const { host, port } = parseAddress(address);
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(port, host, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  listener.on('error', (e) => log.error({ err: e }, 'listener error'));
  const bound = listener.address();
  return {
    port: typeof bound === 'object' && bound !== null ? bound.port : port,
    tls: secure,
    close: () =>
      new Promise<void>((resolve) => {
        closing = true;
        for (const res of answering) if (!res.headersSent) res.shouldKeepAlive = false;
        http.close(); // idle keep-alive connections close now; the checking timer stops
        listener.close(() => resolve());
        injector.destroy();
      }),
    destroyHttp: () => http.closeAllConnections(),
  };
}

/**
 * One TLS listener offering ALPN h2 and http/1.1, with the credentials' certificates, client-certificate policy
 * and later certificate updates; `onSecure` gets each connection once its handshake is done.
 */
async function createTlsListener(
  credentials: ServerCredentials,
  log: Logger,
  handshakeTimeoutMs: number,
  onSecure: (socket: TLSSocket) => void,
): Promise<NetServer> {
  const tlsServer = createTlsServer({
    // A connection that has not finished its handshake by then is closed (node's default: 120 s).
    handshakeTimeout: handshakeTimeoutMs,
    ...(credentials._getConstructorOptions() ?? {}),
    ...(await secureContextOf(credentials)),
    ALPNProtocols: ['h2', 'http/1.1'],
  });
  const watch = (context: SecureContextOptions | null) => {
    if (context !== null) tlsServer.setSecureContext(context);
  };
  credentials._addWatcher(watch);
  tlsServer.on('close', () => credentials._removeWatcher(watch));
  tlsServer.on('secureConnection', (socket: TLSSocket) => {
    socket.on('error', (e) => log.debug({ err: e }, 'TLS connection error'));
    onSecure(socket);
  });
  tlsServer.on('tlsClientError', (e, socket) => {
    log.debug({ err: e }, 'TLS handshake failed');
    // With a listener node leaves the socket open (a handshake timeout closed nothing): close it here.
    socket.destroy();
  });
  return tlsServer;
}

/**
 * Reads a plaintext connection's first bytes until they are the HTTP/2 preface or cannot be, then puts them
 * back and calls `decide` (paused socket: the new owner reads them first).
 */
function sniff(socket: Socket, timeoutMs: number, decide: (isH2: boolean) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  timer.unref();
  const finish = (isH2: boolean) => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', onError);
    socket.off('end', onError);
    socket.pause();
    socket.unshift(seen);
    decide(isH2);
    // HTTP/2 reads what is buffered itself; http.Server reads through the (paused) JS stream.
    if (!isH2) process.nextTick(() => socket.resume());
  };
  const onData = (chunk: Buffer) => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    if (!seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) finish(false);
    else if (n === H2_PREFACE.length) finish(true);
  };
  const onError = () => {
    clearTimeout(timer);
    socket.destroy();
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.on('end', onError); // gone before saying which protocol
}
