import { Server as GrpcServer } from '@grpc/grpc-js';
import type { Server as NiceServer } from 'nice-grpc';

/**
 * Builds a nice-grpc server's grpc-js Server (its services added) without binding a port, and returns it: the
 * one-port listener hands it connections through `createConnectionInjector`. nice-grpc keeps that Server in a
 * closure and builds it only in listen(), which constructs it, adds the services and calls bindAsync
 * synchronously before its first await; bindAsync is replaced for exactly that synchronous call (and restored
 * before anything else runs) so that it records the Server and binds nothing. nice-grpc's shutdown() and
 * forceShutdown() then work on that same Server as usual.
 */
export async function buildUnbound<Ext>(server: NiceServer<Ext>): Promise<GrpcServer> {
  const prototype = GrpcServer.prototype;
  const bindAsync = Object.getOwnPropertyDescriptor(prototype, 'bindAsync');
  if (bindAsync === undefined) throw new Error('grpc-js Server.prototype.bindAsync not found');
  let built: GrpcServer | undefined;
  Object.defineProperty(prototype, 'bindAsync', {
    configurable: true,
    writable: true,
    value(
      this: GrpcServer,
      _port: string,
      _credentials: unknown,
      callback: (e: Error | null, port: number) => void,
    ) {
      built = this; // eslint-disable-line @typescript-eslint/no-this-alias -- the point: record the instance
      queueMicrotask(() => callback(null, 0));
    },
  });
  let listening: Promise<number>;
  try {
    listening = server.listen('unbound:0');
  } finally {
    Object.defineProperty(prototype, 'bindAsync', bindAsync);
  }
  await listening;
  if (built === undefined) {
    throw new Error(
      'nice-grpc did not build its grpc-js Server synchronously in listen(): the one-port listener cannot reach it (nice-grpc changed; see src/server/http/grpc-unbound.ts)',
    );
  }
  return built;
}
