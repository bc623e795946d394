import { createConnection, createServer, type Socket } from 'node:net';
import { onTestFinished } from 'vitest';

/** A TCP relay in front of a port: cut() drops every relayed connection at once (a network cut). */
export interface Relay {
  /** 'host:port' of the relay. */
  readonly address: string;
  /** Destroys every connection relayed so far (both sides). */
  cut(): void;
}

/** Starts a relay to 127.0.0.1:`port` on a free port; closed when the test finishes. */
export async function startRelay(port: number): Promise<Relay> {
  const open = new Set<Socket>();
  const server = createServer((inbound) => {
    const outbound = createConnection({ host: '127.0.0.1', port });
    for (const s of [inbound, outbound]) {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => undefined);
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const bound = server.address();
  const relayPort = typeof bound === 'object' && bound !== null ? bound.port : 0;
  const cut = () => {
    for (const s of open) s.destroy();
  };
  onTestFinished(() => {
    cut();
    server.close();
  });
  return { address: `127.0.0.1:${relayPort}`, cut };
}
