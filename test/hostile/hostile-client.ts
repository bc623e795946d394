/**
 * A hostile gRPC client: every method of every service the server serves, called with raw bytes through
 * grpc-js's generic calls (no per-method code) or a bare HTTP/2 session, and abandoned in every way a client
 * can abandon a call (deadline, cancel, socket destroyed, request stream half-closed early or truncated).
 */
import { connect as h2connect, constants as h2 } from 'node:http2';
import { connect as netConnect } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { TIMEOUT_METADATA_KEY } from '../../src/common/client.js';

/** One method as the wire sees it. */
export interface WireMethod {
  /** `/package.Service/Method`. */
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  /** Request bodies to try, each a list of messages (one for unary requests); always includes an empty one. */
  readonly bodies: readonly (readonly Uint8Array[])[];
}

/** A ts-proto (nice-grpc) service definition, as generated into src/gen and shipped by nice-grpc-server-health. */
interface TsProtoDefinition {
  readonly fullName: string;
  readonly methods: Record<
    string,
    {
      readonly name: string;
      readonly requestStream: boolean;
      readonly responseStream: boolean;
      readonly requestType: {
        /** Absent from older ts-proto output (the health definition): the partial is then encoded as is. */
        fromPartial?(object: unknown): unknown;
        encode(message: unknown): { finish(): Uint8Array };
      };
    }
  >;
}

/** A grpc-js service definition (grpc-tools output, e.g. nice-grpc-server-reflection's). */
type GrpcJsDefinition = Record<
  string,
  { readonly path: string; readonly requestStream: boolean; readonly responseStream: boolean }
>;

/**
 * Every method of `definitions`, with the empty body plus the sample bodies `samples` gives by method path
 * (partial messages for ts-proto definitions, raw bytes for grpc-js ones).
 */
export function wireMethods(
  tsProto: readonly TsProtoDefinition[],
  grpcJs: readonly GrpcJsDefinition[],
  samples: Readonly<Record<string, readonly unknown[]>>,
): WireMethod[] {
  const methods: WireMethod[] = [];
  for (const definition of tsProto) {
    for (const method of Object.values(definition.methods)) {
      const path = `/${definition.fullName}/${method.name}`;
      const sample = samples[path];
      const encode = (partial: unknown) =>
        method.requestType.encode(method.requestType.fromPartial?.(partial) ?? partial).finish();
      methods.push({
        path,
        requestStream: method.requestStream,
        responseStream: method.responseStream,
        bodies: [[new Uint8Array(0)], ...(sample === undefined ? [] : [sample.map(encode)])],
      });
    }
  }
  for (const definition of grpcJs) {
    for (const method of Object.values(definition)) {
      const sample = samples[method.path] as readonly Uint8Array[] | undefined;
      methods.push({
        path: method.path,
        requestStream: method.requestStream,
        responseStream: method.responseStream,
        bodies: [[new Uint8Array(0)], ...(sample === undefined ? [] : [sample])],
      });
    }
  }
  return methods;
}

/** The ways a client abandons a call. */
export const ABUSES = [
  'deadline-1ms',
  'deadline-mid-call',
  'cancel-early',
  'socket-destroyed',
  'half-closed-early',
] as const;
export type Abuse = (typeof ABUSES)[number];

/** What became of one hostile call (for the test's report; the server's survival is what is asserted). */
export interface CallOutcome {
  readonly path: string;
  readonly abuse: Abuse;
  /**
   * A gRPC status code, 'destroyed' (the client killed the socket first), 'reset' (the server closed the stream
   * without a status) or 'hung' (nothing within the bound).
   */
  readonly ending: number | 'destroyed' | 'reset' | 'hung';
}

const identity = (bytes: Uint8Array) => Buffer.from(bytes);
/** No call may take longer than this: a server that does not answer a finished call counts as hung. */
const CALL_BOUND_MS = 15_000;

/** Runs one hostile call; `variant` (0, 1, 2, …) varies the delays so the matrix hits different moments. */
export function abuse(
  client: grpc.Client,
  port: number,
  method: WireMethod,
  body: readonly Uint8Array[],
  kind: Abuse,
  variant: number,
): Promise<CallOutcome> {
  const midDelayMs = 50 + ((variant * 37) % 150);
  const ending = (() => {
    switch (kind) {
      case 'deadline-1ms':
        return grpcJsCall(client, method, body, { deadlineMs: 1 });
      case 'deadline-mid-call':
        return grpcJsCall(client, method, body, { deadlineMs: midDelayMs });
      case 'cancel-early':
        // Streams: after the first response; unary: right after the start, a little later each variant.
        return grpcJsCall(client, method, body, { cancelAfterMs: (variant * 7) % 30 });
      case 'socket-destroyed':
        return rawH2Call(port, method, body, { destroyAfterMs: 20 + ((variant * 29) % 130) });
      case 'half-closed-early':
        // Streams get their messages and an immediate half-close through grpc-js; unary requests a truncated
        // frame and END_STREAM on the bare HTTP/2 session (grpc-js never sends those).
        return method.requestStream
          ? grpcJsCall(client, method, body, { halfClose: true })
          : rawH2Call(port, method, body, { truncate: true });
    }
  })();
  return ending.then((end) => ({ path: method.path, abuse: kind, ending: end }));
}

interface GrpcJsAbuse {
  /** Deadline relative to the start (also sent as prfleet-timeout-ms). */
  readonly deadlineMs?: number;
  /** Cancel this long after the start (unary) or after the first response (streams). */
  readonly cancelAfterMs?: number;
  /** End the request stream right after writing the body (client-streaming methods). */
  readonly halfClose?: boolean;
}

/** A call through grpc-js's generic client API; resolves with the status code it ended with. */
function grpcJsCall(
  client: grpc.Client,
  method: WireMethod,
  body: readonly Uint8Array[],
  how: GrpcJsAbuse,
): Promise<number | 'hung'> {
  return new Promise((resolve) => {
    const metadata = new grpc.Metadata();
    if (how.deadlineMs !== undefined) metadata.set(TIMEOUT_METADATA_KEY, String(how.deadlineMs));
    const options: grpc.CallOptions = {
      deadline: Date.now() + (how.deadlineMs ?? CALL_BOUND_MS),
    };
    let settled = false;
    const finish = (code: number | 'hung') => {
      if (settled) return;
      settled = true;
      clearTimeout(bound);
      resolve(code);
    };
    const bound = setTimeout(() => {
      call.cancel();
      finish('hung');
    }, CALL_BOUND_MS + 2_000);
    const onEnd = (error: grpc.ServiceError | null) => finish(error?.code ?? grpc.status.OK);
    let call:
      | grpc.ClientUnaryCall
      | grpc.ClientReadableStream<Buffer>
      | grpc.ClientDuplexStream<Buffer, Buffer>;
    const first = body[0] ?? new Uint8Array(0);
    if (!method.requestStream && !method.responseStream) {
      call = client.makeUnaryRequest(
        method.path,
        identity,
        identity,
        first,
        metadata,
        options,
        onEnd,
      );
    } else if (!method.requestStream) {
      call = client.makeServerStreamRequest(
        method.path,
        identity,
        identity,
        first,
        metadata,
        options,
      );
    } else if (!method.responseStream) {
      const writable = client.makeClientStreamRequest(
        method.path,
        identity,
        identity,
        metadata,
        options,
        onEnd,
      );
      for (const message of body) writable.write(message);
      if (how.halfClose === true) writable.end();
      call = writable;
    } else {
      const duplex = client.makeBidiStreamRequest(
        method.path,
        identity,
        identity,
        metadata,
        options,
      );
      for (const message of body) duplex.write(message);
      if (how.halfClose === true) duplex.end();
      call = duplex;
    }
    if (method.responseStream) {
      const stream = call as grpc.ClientReadableStream<Buffer>;
      stream.on('data', () => {
        if (how.cancelAfterMs !== undefined) setTimeout(() => stream.cancel(), how.cancelAfterMs);
      });
      stream.on('error', (error: grpc.ServiceError) => finish(error.code));
      stream.on('status', (status: grpc.StatusObject) => finish(status.code));
      // A stream that sends nothing is cancelled anyway, a little later.
      if (how.cancelAfterMs !== undefined)
        setTimeout(() => stream.cancel(), 300 + how.cancelAfterMs);
    } else if (how.cancelAfterMs !== undefined) {
      setTimeout(() => call.cancel(), how.cancelAfterMs);
    }
  });
}

interface RawAbuse {
  /** Destroy the TCP socket this long after the start, or at the first response bytes. */
  readonly destroyAfterMs?: number;
  /** Send a length prefix promising more bytes than follow, then END_STREAM. */
  readonly truncate?: boolean;
}

/** gRPC's length-prefixed message framing. */
function frame(message: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/**
 * A call on a bare HTTP/2 session over a socket of its own: what a client that dies mid-call, or a broken client
 * library, looks like to the server. Resolves with the grpc-status the server sent, 'destroyed' when the socket
 * was killed first, 'reset' when the stream closed without a status, or 'hung'.
 */
function rawH2Call(
  port: number,
  method: WireMethod,
  body: readonly Uint8Array[],
  how: RawAbuse,
): Promise<number | 'destroyed' | 'reset' | 'hung'> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    const session = h2connect(`http://127.0.0.1:${port}`, { createConnection: () => socket });
    session.on('error', () => {});
    let settled = false;
    const finish = (ending: number | 'destroyed' | 'reset' | 'hung') => {
      if (settled) return;
      settled = true;
      clearTimeout(bound);
      clearTimeout(killer);
      session.destroy();
      resolve(ending);
    };
    const bound = setTimeout(() => finish('hung'), CALL_BOUND_MS);
    const kill = () => {
      // Alternate a FIN and a TCP RST: both are how clients vanish.
      if (port % 2 === 0 || body.length % 2 === 0) socket.resetAndDestroy();
      else socket.destroy();
      finish('destroyed');
    };
    const killer =
      how.destroyAfterMs === undefined ? undefined : setTimeout(kill, how.destroyAfterMs);
    const stream = session.request({
      [h2.HTTP2_HEADER_METHOD]: 'POST',
      [h2.HTTP2_HEADER_PATH]: method.path,
      [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      [h2.HTTP2_HEADER_TE]: 'trailers',
    });
    stream.on('error', () => {});
    stream.on('data', () => {
      if (how.destroyAfterMs !== undefined) kill();
    });
    const statusOf = (headers: Record<string, unknown>) => {
      const status = headers['grpc-status'];
      if (status !== undefined) finish(Number(status));
    };
    stream.on('response', statusOf); // trailers-only answers
    stream.on('trailers', statusOf);
    stream.on('close', () => finish('reset'));
    if (how.truncate === true) {
      const whole = frame(body[0] ?? new Uint8Array(0));
      whole.writeUInt32BE(whole.length - 5 + 16, 1); // promises 16 bytes that never come
      stream.end(whole);
      return;
    }
    for (const message of body) stream.write(frame(message));
    // A unary or server-streaming request is complete only with END_STREAM; a client stream stays open.
    if (!method.requestStream) stream.end();
  });
}

/** Runs `tasks` with at most `limit` at a time. */
export async function runBounded<T>(
  tasks: readonly (() => Promise<T>)[],
  limit: number,
): Promise<T[]> {
  const results: T[] = new Array<T>(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const index = next++;
      results[index] = await tasks[index]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}
