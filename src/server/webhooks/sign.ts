import { createHmac, timingSafeEqual } from 'node:crypto';

/** Header names of a delivery (docs/events.md, Webhooks). */
export const WEBHOOK_HEADERS = {
  /** The event's cursor: unique per event log, the same on every retry (deduplicate on it). */
  eventId: 'prfleet-event-id',
  /** The event's kind, e.g. EVENT_KIND_PROUT. */
  eventKind: 'prfleet-event-kind',
  /** The webhook's id. */
  webhookId: 'prfleet-webhook-id',
  /** Unix seconds when this attempt was signed (refuse old ones: replays). */
  timestamp: 'prfleet-timestamp',
  /** `v1=` and hex HMAC-SHA256(secret, `${timestamp}.${body}`). */
  signature: 'prfleet-signature',
  /** 1 for the first attempt, 2 for the first retry, … */
  attempt: 'prfleet-attempt',
} as const;

/** The signature header's value: `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * A receiver's check (tests use it; docs/events.md shows the same recipe): the signature matches and the
 * timestamp is within `toleranceS` of now.
 */
export function verifyWebhook(
  secret: string,
  headers: { timestamp: string; signature: string },
  body: string,
  options: { toleranceS?: number; nowS?: number } = {},
): boolean {
  const timestamp = Number(headers.timestamp);
  if (!Number.isInteger(timestamp)) return false;
  const now = options.nowS ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > (options.toleranceS ?? 300)) return false;
  const expected = Buffer.from(signWebhook(secret, timestamp, body));
  const got = Buffer.from(headers.signature);
  return got.length === expected.length && timingSafeEqual(got, expected);
}
