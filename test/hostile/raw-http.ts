/**
 * Raw HTTP/1.1 over a bare TCP socket: what a hostile client (or a confused proxy) sends, byte for byte, with no
 * client library normalizing the request target or the headers first.
 */
import { connect, type Socket } from 'node:net';

/** One answer as the wire carried it. */
export interface RawAnswer {
  /** Status code of the first answer, or 0 when none came. */
  readonly status: number;
  /** Everything the server sent before it closed the connection or `waitMs` passed. */
  readonly text: string;
  /** True when the server closed the connection. */
  readonly closed: boolean;
}

/**
 * Sends `request` (a string or bytes, as is) on a new connection and collects what comes back for `waitMs` or
 * until the server closes the connection.
 */
export function rawHttp(
  port: number,
  request: string | Buffer,
  waitMs = 2_000,
): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let closed = false;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, text, closed });
    };
    const timer = setTimeout(finish, waitMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.write(request);
  });
}

/** The body of the first answer in `text` (after the blank line). */
export function bodyOf(text: string): string {
  const at = text.indexOf('\r\n\r\n');
  return at < 0 ? '' : text.slice(at + 4);
}

/** Opens a connection and resolves once it is established (the caller writes and destroys it). */
export function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Resolves when `socket` is closed by the other side, or with false after `waitMs`. */
export function closedWithin(socket: Socket, waitMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve(true);
    const timer = setTimeout(() => resolve(false), waitMs);
    socket.on('error', () => {});
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.resume();
  });
}
