/**
 * Server reflection as real clients need it: grpc.reflection.v1 and the older v1alpha (grpcurl before 1.9, GUI
 * clients), over one descriptor set (src/gen/protoset.binpb: prfleet's protos plus proto-vendor's health and
 * google.rpc error details, so clients can call Health and decode error details).
 */
import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { ServiceImplementation } from 'nice-grpc';
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

/**
 * Both reflection services with their implementation over `protoset`, listing `serviceNames`. The descriptor set
 * is decoded (google-protobuf, a fifth of a cold start's CPU time) by the first reflection call, not at start:
 * few servers are ever asked, and a start must be quick.
 */
export function reflectionServices(protoset: Uint8Array, serviceNames: readonly string[]) {
  let decoded: ServiceImplementation<typeof ServerReflectionService> | undefined;
  const implementation: ServiceImplementation<typeof ServerReflectionService> = {
    serverReflectionInfo: (requests, context) =>
      (decoded ??= ServerReflection(protoset, serviceNames)).serverReflectionInfo(
        requests,
        context,
      ),
  };
  return [
    { definition: ServerReflectionService, implementation },
    { definition: ServerReflectionV1AlphaService, implementation },
  ] as const;
}
