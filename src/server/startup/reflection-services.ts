/**
 * The reflection services as the server registers them: on encoded messages, so that the reflection library
 * (google-protobuf and its generated descriptor classes, ~290 KB evaluated at import: a quarter of a cold
 * start's CPU) is imported by the first reflection call (../reflection.ts), not at start. Few servers are ever
 * asked, and a start must be quick.
 */
import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { CallContext } from 'nice-grpc-common';
import type { ReflectionOnBytes } from '../reflection.js';

const bytes = (message: Buffer): Buffer => message;

/** grpc.reflection.<version>.ServerReflection with its messages left encoded. */
function definitionOnBytes(version: 'v1' | 'v1alpha') {
  return {
    serverReflectionInfo: {
      path: `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
      requestStream: true,
      responseStream: true,
      requestSerialize: bytes,
      requestDeserialize: bytes,
      responseSerialize: bytes,
      responseDeserialize: bytes,
    },
  } as const satisfies ServiceDefinition<UntypedServiceImplementation>;
}

/** Both reflection services (v1, v1alpha) with their implementation over `protoset`, listing `serviceNames`. */
export function reflectionServices(protoset: Uint8Array, serviceNames: readonly string[]) {
  let serve: Promise<ReflectionOnBytes> | undefined;
  const implementation = {
    async *serverReflectionInfo(requests: AsyncIterable<Buffer>, context: CallContext) {
      serve ??= import('../reflection.js').then((r) => r.reflectionOnBytes(protoset, serviceNames));
      yield* (await serve)(requests, context);
    },
  };
  return [
    { definition: definitionOnBytes('v1'), implementation },
    { definition: definitionOnBytes('v1alpha'), implementation },
  ] as const;
}
