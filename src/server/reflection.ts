/**
 * Server reflection as real clients need it: grpc.reflection.v1 and the older v1alpha (grpcurl before 1.9, GUI
 * clients), over one descriptor set (src/gen/protoset.binpb: prfleet's protos plus proto-vendor's health and
 * google.rpc error details, so clients can call Health and decode error details). The server registers the
 * services from startup/reflection-services.ts and imports this module (and with it google-protobuf) on the
 * first reflection call.
 */
import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { ServerError, Status, type CallContext } from 'nice-grpc-common';
import { ServerReflection, ServerReflectionService } from 'nice-grpc-server-reflection';

/**
 * grpc.reflection.v1alpha.ServerReflection: the same messages, field for field, as v1 (v1 is v1alpha renamed),
 * so v1's codec and implementation serve it under the older path.
 */
export const ServerReflectionV1AlphaService = {
  serverReflectionInfo: {
    ...ServerReflectionService.serverReflectionInfo,
    path: '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo',
  },
} as const satisfies ServiceDefinition<UntypedServiceImplementation>;

/** ServerReflectionInfo on encoded messages: what both services' byte-level definitions call. */
export type ReflectionOnBytes = (
  requests: AsyncIterable<Buffer>,
  context: CallContext,
) => AsyncIterable<Buffer>;

/**
 * Reflection over `protoset`, listing `serviceNames`, decoding the requests and encoding the responses itself.
 * A request that does not decode ends the call as grpc-js's own deserializer would (INTERNAL, "Error
 * deserializing request").
 */
export function reflectionOnBytes(
  protoset: Uint8Array,
  serviceNames: readonly string[],
): ReflectionOnBytes {
  const reflection = ServerReflection(protoset, serviceNames);
  const { requestDeserialize, responseSerialize } = ServerReflectionService.serverReflectionInfo;
  async function* decoded(requests: AsyncIterable<Buffer>) {
    for await (const bytes of requests) {
      try {
        yield requestDeserialize(bytes);
      } catch (e) {
        throw new ServerError(
          Status.INTERNAL,
          `Error deserializing request: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
    }
  }
  return async function* (requests, context) {
    for await (const response of reflection.serverReflectionInfo(decoded(requests), context)) {
      yield responseSerialize(response);
    }
  };
}
