/**
 * The bare relay: the floor of prfleet's stack. A unary call goes client → relay server, which forwards it as one
 * message on a relay agent's open bidi stream; the agent answers on the same stream and the server replies. A
 * session does the same for requests a client streams on one open bidi call (the floor of CommandSession); the
 * first 4 bytes of a session request and of its reply carry the client's request id.
 * Same libraries (nice-grpc over grpc-js, h2c on loopback) and the same message sizes as prfleet's READ KEYS,
 * but opaque bytes: no protobuf, no validation, no routing, no emulator, no logging.
 */
import { createChannel, createClient, createServer, type Server } from 'nice-grpc';

/** Bytes as nice-grpc hands them over. */
type Bytes = Uint8Array<ArrayBuffer>;

/** Identity (de)serializers: messages are raw bytes on the wire. */
const raw = {
  requestSerialize: (value: Bytes) => Buffer.from(value.buffer, value.byteOffset, value.byteLength),
  requestDeserialize: (bytes: Buffer): Bytes => new Uint8Array(bytes),
  responseSerialize: (value: Bytes) =>
    Buffer.from(value.buffer, value.byteOffset, value.byteLength),
  responseDeserialize: (bytes: Buffer): Bytes => new Uint8Array(bytes),
};

/** The relay's two RPCs, as a grpc-js style service definition (nice-grpc accepts these). */
export const RelayDefinition = {
  call: {
    path: '/bench.Relay/Call',
    requestStream: false,
    responseStream: false,
    originalName: 'Call',
    ...raw,
  },
  connect: {
    path: '/bench.Relay/Connect',
    requestStream: true,
    responseStream: true,
    originalName: 'Connect',
    ...raw,
  },
  session: {
    path: '/bench.Relay/Session',
    requestStream: true,
    responseStream: true,
    originalName: 'Session',
    ...raw,
  },
} as const;

/** Message sizes in bytes, taken from prfleet's READ KEYS messages. */
export interface RelaySizes {
  /** Server → agent message (prfleet: ConnectResponse with the Command). */
  readonly down: number;
  /** Agent → server message (prfleet: ConnectRequest with the CommandResult). */
  readonly up: number;
  /** Server → client reply (prfleet: ReadKeysResponse). */
  readonly reply: number;
}

/** Id prefix on stream messages: 4 bytes, big-endian. */
const ID_BYTES = 4;

/** A minimal async queue: push from callbacks, pull with for-await. */
export class Outbox implements AsyncIterable<Bytes> {
  private readonly items: Bytes[] = [];
  private wake: (() => void) | undefined;
  private closed = false;
  push(item: Bytes): void {
    this.items.push(item);
    this.wake?.();
  }
  close(): void {
    this.closed = true;
    this.wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<Bytes> {
    for (;;) {
      const item = this.items.shift();
      if (item) {
        yield item;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

/** Starts the relay server on 127.0.0.1:0; resolves with the server and its port. */
export async function startRelayServer(
  sizes: RelaySizes,
  onAgent: () => void = () => undefined,
): Promise<{ server: Server; port: number }> {
  let agent: Outbox | undefined;
  const pending = new Map<number, (reply: Bytes) => void>();
  let nextId = 1;
  const reply = new Uint8Array(sizes.reply);
  /** Sends one message down the agent's stream; resolves with its answer. */
  const relay = (): Promise<Bytes> => {
    if (!agent) return Promise.reject(new Error('no relay agent connected'));
    const id = nextId++ >>> 0;
    const message = new Uint8Array(Math.max(sizes.down, ID_BYTES));
    new DataView(message.buffer).setUint32(0, id);
    const answered = new Promise<Bytes>((resolve) => pending.set(id, resolve));
    agent.push(message);
    return answered;
  };
  const server = createServer();
  server.add(RelayDefinition, {
    async call(_request: Bytes): Promise<Bytes> {
      await relay();
      return reply;
    },
    async *session(requests: AsyncIterable<Bytes>): AsyncIterable<Bytes> {
      const replies = new Outbox();
      void (async () => {
        try {
          for await (const request of requests) {
            const answer = new Uint8Array(Math.max(sizes.reply, ID_BYTES));
            answer.set(request.subarray(0, ID_BYTES));
            void relay().then(() => replies.push(answer));
          }
        } catch {
          // stream cancelled: the bench is ending
        }
        replies.close();
      })();
      yield* replies;
    },
    async *connect(requests: AsyncIterable<Bytes>): AsyncIterable<Bytes> {
      const outbox = new Outbox();
      agent = outbox;
      onAgent();
      void (async () => {
        try {
          for await (const message of requests) {
            const id = new DataView(
              message.buffer,
              message.byteOffset,
              message.byteLength,
            ).getUint32(0);
            pending.get(id)?.(message);
            pending.delete(id);
          }
        } catch {
          // stream cancelled: the bench is ending
        }
        outbox.close();
      })();
      yield* outbox;
    },
  });
  const port = await server.listen('127.0.0.1:0');
  return { server, port };
}

/** Runs a relay agent against `address` until `signal` aborts: answers every message with `sizes.up` bytes. */
export async function runRelayAgent(
  address: string,
  sizes: RelaySizes,
  signal: AbortSignal,
): Promise<void> {
  const channel = createChannel(`http://${address}`);
  const client = createClient(RelayDefinition, channel);
  const outbox = new Outbox();
  signal.addEventListener('abort', () => outbox.close());
  // The first message announces the agent, as prfleet's Hello does.
  outbox.push(new Uint8Array(ID_BYTES));
  try {
    for await (const message of client.connect(outbox, { signal })) {
      const answer = new Uint8Array(Math.max(sizes.up, ID_BYTES));
      answer.set(message.subarray(0, ID_BYTES));
      outbox.push(answer);
    }
  } catch (error) {
    if (!signal.aborted) throw error;
  } finally {
    channel.close();
  }
}

/** A unary client of the relay, with its channel. */
export function createRelayClient(address: string) {
  const channel = createChannel(`http://${address}`);
  return { client: createClient(RelayDefinition, channel), close: () => channel.close() };
}

/** One relay session (an open bidi call) with one request in flight at a time, requests of `size` bytes. */
export function openRelaySession(address: string, size: number) {
  const channel = createChannel(`http://${address}`);
  const client = createClient(RelayDefinition, channel);
  const requests = new Outbox();
  const controller = new AbortController();
  const waiting = new Map<number, () => void>();
  const reader = (async () => {
    for await (const answer of client.session(requests, { signal: controller.signal })) {
      const id = new DataView(answer.buffer, answer.byteOffset, answer.byteLength).getUint32(0);
      waiting.get(id)?.();
      waiting.delete(id);
    }
  })().catch(() => undefined);
  let nextId = 0;
  return {
    call(): Promise<void> {
      const id = ++nextId >>> 0;
      const request = new Uint8Array(Math.max(size, ID_BYTES));
      new DataView(request.buffer).setUint32(0, id);
      const answered = new Promise<void>((resolve) => waiting.set(id, resolve));
      requests.push(request);
      return answered;
    },
    async close(): Promise<void> {
      requests.close();
      controller.abort();
      await reader;
      channel.close();
    },
  };
}
