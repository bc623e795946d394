/**
 * nice-grpc service definitions that encode complete messages without copying them first.
 *
 * For a ts-proto definition, nice-grpc serializes every message as `encode(fromPartial(value))` so that callers
 * may hand it partial objects. fromPartial deep-copies the message: for each command, result and audit report
 * prfleet sends, that copy cost more than the encoding itself (and its garbage). Here a message is first encoded
 * as it is, through a writer that refuses anything fromPartial would have filled in (a missing string, bool,
 * number, bigint, bytes, list or map field throws, as the stock writer already does for most of them); only a
 * message that is not complete is copied with fromPartial and encoded again. Complete messages therefore give
 * exactly the bytes they gave before, and partial ones are still accepted.
 */
import { BinaryWriter, type BinaryReader } from '@bufbuild/protobuf/wire';
import type { NormalizedServiceDefinition, TsProtoServiceDefinition } from 'nice-grpc';

/** Thrown by {@link StrictBinaryWriter} for a field value fromPartial would have defaulted. */
class IncompleteMessage extends Error {}

/**
 * A BinaryWriter that throws for `undefined`/`null` (and other non-values) where the stock writer would quietly
 * write "undefined", `false` or NaN: the generated encoders only call these for fields that are set.
 */
class StrictBinaryWriter extends BinaryWriter {
  override string(value: string): this {
    if (typeof value !== 'string') throw new IncompleteMessage('string field missing');
    return super.string(value);
  }
  override bool(value: boolean): this {
    if (typeof value !== 'boolean') throw new IncompleteMessage('bool field missing');
    return super.bool(value);
  }
  override double(value: number): this {
    if (typeof value !== 'number') throw new IncompleteMessage('double field missing');
    return super.double(value);
  }
  override float(value: number): this {
    if (typeof value !== 'number') throw new IncompleteMessage('float field missing');
    return super.float(value);
  }
  override bytes(value: Uint8Array): this {
    if (!(value instanceof Uint8Array)) throw new IncompleteMessage('bytes field missing');
    return super.bytes(value);
  }
}

/** The encoder of a ts-proto message type, as nice-grpc sees it. */
export interface TsProtoMessageType {
  encode(message: unknown, writer?: BinaryWriter): { finish(): Uint8Array };
  decode(input: Uint8Array | BinaryReader): unknown;
  fromPartial?(object: unknown): unknown;
}

/**
 * A writer that encoded a message larger than this is not kept for the next one: the buffer of one big listing
 * page must not stay allocated for the life of the process.
 */
const KEPT_WRITER_BYTES = 64 * 1024;

/**
 * The one writer every direct encode uses. Encoding is synchronous and finish() copies the bytes out and rewinds
 * the writer, so reusing it is safe; a fresh writer per message started at 128 bytes, grew (a copy) for most
 * commands and results, and left both buffers as garbage on every message.
 */
let sharedWriter: StrictBinaryWriter | undefined;

/** `encode(value)` when `value` is a complete message, else `encode(fromPartial(value))`; the same bytes either way. */
function serializerOf(type: TsProtoMessageType): (value: unknown) => Uint8Array {
  const fromPartial = type.fromPartial;
  if (fromPartial === undefined) return (value) => type.encode(value).finish();
  return (value) => {
    const writer = sharedWriter ?? new StrictBinaryWriter();
    sharedWriter = undefined; // a writer that threw mid-message is never reused
    let direct: Uint8Array;
    try {
      direct = type.encode(value, writer).finish();
    } catch {
      // Not complete (or not a message at all): what nice-grpc would have done.
      return type.encode(fromPartial.call(type, value)).finish();
    }
    if (direct.length <= KEPT_WRITER_BYTES) sharedWriter = writer;
    return direct;
  };
}

/**
 * The nice-grpc form of a ts-proto service definition (same paths, types and partial-message inputs as nice-grpc
 * derives itself), with serializers that skip the fromPartial copy for complete messages. Use it wherever the
 * generated definition is handed to `server.add` or `createClient` on a hot path.
 */
export function directServiceDefinition<Service extends TsProtoServiceDefinition>(
  definition: Service,
  options: {
    /** The server's request decoder of a method (path, ts-proto type); @default `type.decode` */
    readonly requestDeserializer?: (
      path: string,
      type: TsProtoMessageType,
    ) => (bytes: Uint8Array) => unknown;
  } = {},
): NormalizedServiceDefinition<Service> {
  const result: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(definition.methods)) {
    const requestType = method.requestType as TsProtoMessageType;
    const responseType = method.responseType as TsProtoMessageType;
    const path = `/${definition.fullName}/${method.name}`;
    result[key] = {
      path,
      requestStream: method.requestStream,
      responseStream: method.responseStream,
      requestSerialize: serializerOf(requestType),
      requestDeserialize:
        options.requestDeserializer?.(path, requestType) ??
        ((bytes: Uint8Array) => requestType.decode(bytes)),
      responseSerialize: serializerOf(responseType),
      responseDeserialize: (bytes: Uint8Array) => responseType.decode(bytes),
      options: method.options,
    };
  }
  return result as NormalizedServiceDefinition<Service>;
}
