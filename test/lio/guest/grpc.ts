/** gRPC part of the in-VM suite: prfleet server + sgio agent + client over 127.0.0.1, on the real LIO LU. */
import { formatLine } from '../protocol.js';

/** Runs the gRPC checks; returns the number of failures. */
export async function runGrpcPart(options: { print: (line: string) => void }): Promise<number> {
  options.print(formatLine({ t: 'check', part: 'grpc', name: 'not yet built', ok: false }));
  return 1;
}
