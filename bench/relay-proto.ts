/**
 * The bare relay of bench/relay.ts carrying prfleet's real protobuf messages: a floor that includes the part of
 * prfleet's work no code of ours can avoid, since the API is protobuf. Its server decodes the ReadKeysRequest
 * (or CommandSessionRequest), encodes a ConnectResponse with the Command down the agent's stream, decodes the
 * agent's ConnectRequest and encodes the ReadKeysResponse (or CommandSessionResponse); its agent decodes the
 * ConnectResponse and encodes a ConnectRequest carrying a real READ KEYS result (sampled from prfleet by the
 * bench). The same generated encoders and decoders prfleet uses (ts-proto over @bufbuild/protobuf's wire
 * format), nothing else: no validation, routing, deadlines, records or device.
 */
import { createChannel, createClient, createServer, type Server } from 'nice-grpc';
import { Command, ConnectRequest, ConnectResponse } from '../src/gen/prfleet/v1/agent.js';
import {
  CommandSessionRequest,
  CommandSessionResponse,
  ReadKeysRequest,
  ReadKeysResponse,
} from '../src/gen/prfleet/v1/control.js';
import { CommandResult, PrinAction } from '../src/gen/prfleet/v1/scsi.js';
import { Outbox, RelayDefinition } from './relay.js';

type Bytes = Uint8Array<ArrayBuffer>;

/** The bytes of an encoded message, as nice-grpc's raw definition takes them. */
const bytesOf = (encoded: Uint8Array): Bytes => encoded as Bytes;

/** Command ids as long as the server's (a 17-character instance prefix and a counter). */
const ID_PREFIX = 'relay000-relay000';

/** Starts the protobuf relay server on 127.0.0.1:0; resolves with the server and its port. */
export async function startProtoRelayServer(
  onAgent: () => void = () => undefined,
): Promise<{ server: Server; port: number }> {
  let agent: Outbox | undefined;
  const pending = new Map<string, (result: CommandResult) => void>();
  let nextId = 0;
  /** Sends the READ KEYS of `request` down the agent's stream as a Command; resolves with its result. */
  const relay = (request: ReadKeysRequest): Promise<CommandResult> => {
    if (!agent) return Promise.reject(new Error('no relay agent connected'));
    const commandId = `${ID_PREFIX}-${String(++nextId).padStart(18, '0')}`;
    const command = Command.fromPartial({
      commandId,
      path: request.target?.path ?? '',
      timeout: { seconds: 60n, nanos: 0 },
      kind: {
        $case: 'prin',
        value: { action: PrinAction.PRIN_ACTION_READ_KEYS, allocationLength: 8192 },
      },
    });
    const answered = new Promise<CommandResult>((resolve) => pending.set(commandId, resolve));
    agent.push(
      bytesOf(ConnectResponse.encode({ message: { $case: 'command', value: command } }).finish()),
    );
    return answered;
  };
  const server = createServer();
  server.add(RelayDefinition, {
    async call(request: Bytes): Promise<Bytes> {
      const result = await relay(ReadKeysRequest.decode(request));
      return bytesOf(ReadKeysResponse.encode({ result }).finish());
    },
    async *session(requests: AsyncIterable<Bytes>): AsyncIterable<Bytes> {
      const replies = new Outbox();
      void (async () => {
        try {
          for await (const bytes of requests) {
            const { requestId, command } = CommandSessionRequest.decode(bytes);
            if (command?.$case !== 'readKeys') continue;
            void relay(command.value).then((result) =>
              replies.push(
                bytesOf(
                  CommandSessionResponse.encode({
                    requestId,
                    reply: { $case: 'result', value: result },
                  }).finish(),
                ),
              ),
            );
          }
        } catch {
          // stream cancelled: the bench is ending
        }
        replies.close();
      })();
      yield* replies;
    },
    async *connect(messages: AsyncIterable<Bytes>): AsyncIterable<Bytes> {
      const outbox = new Outbox();
      agent = outbox;
      onAgent();
      void (async () => {
        try {
          for await (const bytes of messages) {
            const { message } = ConnectRequest.decode(bytes);
            if (message?.$case !== 'result') continue;
            pending.get(message.value.commandId)?.(message.value);
            pending.delete(message.value.commandId);
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

/** Runs a protobuf relay agent until `signal` aborts: answers every Command with `sample` under its command id. */
export async function runProtoRelayAgent(
  address: string,
  sample: CommandResult,
  signal: AbortSignal,
): Promise<void> {
  const channel = createChannel(`http://${address}`);
  const client = createClient(RelayDefinition, channel);
  const outbox = new Outbox();
  signal.addEventListener('abort', () => outbox.close());
  // The first message announces the agent, as prfleet's Hello does (the server reads past it).
  outbox.push(new Uint8Array(0));
  try {
    for await (const bytes of client.connect(outbox, { signal })) {
      const { message } = ConnectResponse.decode(bytes);
      if (message?.$case !== 'command') continue;
      const result = { ...sample, commandId: message.value.commandId };
      outbox.push(
        bytesOf(ConnectRequest.encode({ message: { $case: 'result', value: result } }).finish()),
      );
    }
  } catch (error) {
    if (!signal.aborted) throw error;
  } finally {
    channel.close();
  }
}

/** A unary client of the protobuf relay sending `request`, with its channel. */
export function createProtoRelayClient(address: string, request: ReadKeysRequest) {
  const channel = createChannel(`http://${address}`);
  const client = createClient(RelayDefinition, channel);
  const bytes = bytesOf(ReadKeysRequest.encode(request).finish());
  return {
    call: async (): Promise<CommandResult | undefined> =>
      ReadKeysResponse.decode(await client.call(bytes)).result,
    close: () => channel.close(),
  };
}

/** One protobuf relay session (an open bidi call) with one READ KEYS of `request` in flight at a time. */
export function openProtoRelaySession(address: string, request: ReadKeysRequest) {
  const channel = createChannel(`http://${address}`);
  const client = createClient(RelayDefinition, channel);
  const requests = new Outbox();
  const controller = new AbortController();
  const waiting = new Map<string, (response: CommandSessionResponse) => void>();
  const reader = (async () => {
    for await (const bytes of client.session(requests, { signal: controller.signal })) {
      const response = CommandSessionResponse.decode(bytes);
      waiting.get(response.requestId)?.(response);
      waiting.delete(response.requestId);
    }
  })().catch(() => undefined);
  let nextId = 0;
  return {
    call(): Promise<CommandSessionResponse> {
      const requestId = String(++nextId);
      const answered = new Promise<CommandSessionResponse>((resolve) =>
        waiting.set(requestId, resolve),
      );
      requests.push(
        bytesOf(
          CommandSessionRequest.encode({
            requestId,
            command: { $case: 'readKeys', value: request },
          }).finish(),
        ),
      );
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

/** The sample result as a command-line argument (base64 of its encoding), and back. */
export const encodeSample = (sample: CommandResult): string =>
  Buffer.from(CommandResult.encode(sample).finish()).toString('base64');
export const decodeSample = (text: string): CommandResult =>
  CommandResult.decode(Buffer.from(text, 'base64'));
