// A real HTTP webhook receiver for the tests (node:http): records every request, answers as the test says, and
// checks signatures with the recipe docs/events.md gives receivers (not the server's own code).
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, onTestFinished } from 'vitest';

/** One request the receiver got. */
export interface Received {
  readonly eventId: string;
  readonly kind: string;
  readonly timestamp: string;
  readonly signature: string;
  readonly attempt: number;
  readonly body: string;
  readonly event: Record<string, unknown>;
  /** What the receiver answered: a status, or 'hang' (no answer: the server's timeout). */
  readonly answer: number | 'hang';
}

/** How to answer a request (default 204). */
export type Behaviour = (r: Omit<Received, 'answer'>, index: number) => number | 'hang';

/** The receiver, its URL and what it got. */
export interface Receiver {
  readonly url: string;
  readonly received: Received[];
  /** Requests answered 2xx, in arrival order. */
  accepted(): Received[];
  /** Changes how requests are answered from now on. */
  behave(behaviour: Behaviour): void;
  /** Waits until `n` requests were accepted. */
  waitAccepted(n: number, timeoutMs?: number): Promise<Received[]>;
  close(): Promise<void>;
}

/** docs/events.md's recipe: hex HMAC-SHA256(secret, `${timestamp}.${body}`), compared in constant time. */
export function verifiesAsDocumented(secret: string, r: Received, toleranceS = 300): boolean {
  const expected = `v1=${createHmac('sha256', secret).update(`${r.timestamp}.${r.body}`).digest('hex')}`;
  const fresh = Math.abs(Date.now() / 1000 - Number(r.timestamp)) <= toleranceS;
  return (
    fresh &&
    r.signature.length === expected.length &&
    timingSafeEqual(Buffer.from(r.signature), Buffer.from(expected))
  );
}

function header(req: IncomingMessage, name: string): string {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : (v ?? '');
}

/** Starts a receiver on 127.0.0.1:0, closed when the test finishes. */
export async function startReceiver(path = '/hook'): Promise<Receiver> {
  let behaviour: Behaviour = () => 204;
  const received: Received[] = [];
  const hanging = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const r = {
        eventId: header(req, 'prfleet-event-id'),
        kind: header(req, 'prfleet-event-kind'),
        timestamp: header(req, 'prfleet-timestamp'),
        signature: header(req, 'prfleet-signature'),
        attempt: Number(header(req, 'prfleet-attempt')),
        body,
        event: JSON.parse(body) as Record<string, unknown>,
      };
      const answer = req.url === path ? behaviour(r, received.length) : 404;
      received.push({ ...r, answer });
      if (answer === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      res.writeHead(answer).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const receiver: Receiver = {
    url: `http://127.0.0.1:${port}${path}`,
    received,
    accepted: () => received.filter((r) => typeof r.answer === 'number' && r.answer < 300),
    behave: (b) => (behaviour = b),
    async waitAccepted(n, timeoutMs = 30_000) {
      await expect
        .poll(() => receiver.accepted().length, { timeout: timeoutMs, interval: 50 })
        .toBeGreaterThanOrEqual(n);
      return receiver.accepted();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  onTestFinished(() => receiver.close());
  return receiver;
}
