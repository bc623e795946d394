/**
 * grpc.reflection.v1, served by nice-grpc-server-reflection but loaded on the first reflection call: that library
 * and google-protobuf (whose descriptor classes it decodes the protoset with) were a third of the server's cold
 * start, and most servers are never asked. Messages cross the wire as bytes and are decoded with the library's
 * own classes once it is loaded.
 */
import { readFile } from 'node:fs/promises';
import type { CallContext } from 'nice-grpc';

const bytes = (message: Buffer): Buffer => message;

/** The grpc-js definition of ServerReflection with pass-through (de)serializers. */
export const LazyServerReflectionService = {
  serverReflectionInfo: {
    path: '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
    requestStream: true,
    responseStream: true,
    requestSerialize: bytes,
    requestDeserialize: bytes,
    responseSerialize: bytes,
    responseDeserialize: bytes,
    originalName: 'serverReflectionInfo',
  },
} as const;

async function* decodeEach<T>(
  requests: AsyncIterable<Buffer>,
  decode: (message: Buffer) => T,
): AsyncIterable<T> {
  for await (const message of requests) yield decode(message);
}

/**
 * The implementation of {@link LazyServerReflectionService} for the descriptor set in `protosetPath`, exposing
 * `services` (nice-grpc-server-reflection's `ServerReflection`). The file is read and the library loaded once,
 * on the first call; a failure to do either fails that call and is retried by the next.
 */
export function lazyServerReflection(protosetPath: string, services: readonly string[]) {
  let loading: ReturnType<typeof load> | undefined;
  async function load() {
    const [imported, protoset] = await Promise.all([
      import('nice-grpc-server-reflection'),
      readFile(protosetPath),
    ]);
    // A CommonJS package: its exports object is `default` both in Node and in the esbuild bundle (whose chunks
    // expose nothing else of it).
    const library = imported.default;
    return {
      implementation: library.ServerReflection(protoset, services),
      method: library.ServerReflectionService.serverReflectionInfo,
    };
  }
  return {
    async *serverReflectionInfo(
      requests: AsyncIterable<Buffer>,
      context: CallContext,
    ): AsyncIterable<Buffer> {
      loading ??= load().catch((error: unknown) => {
        loading = undefined;
        throw error;
      });
      const { implementation, method } = await loading;
      const responses = implementation.serverReflectionInfo(
        decodeEach(requests, (message) => method.requestDeserialize(message)),
        context,
      );
      for await (const response of responses) yield method.responseSerialize(response);
    },
  };
}
