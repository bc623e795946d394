import { quoteInput } from '../../common/errors.js';

/** Longest receiver URL. */
export const MAX_WEBHOOK_URL = 2048;
/** Shortest and longest secret, bytes. */
export const SECRET_BYTES = { min: 16, max: 1024 } as const;

/** Why a URL or secret is refused (the RPC answers INVALID_ARGUMENT naming the field). */
export class WebhookInputError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'WebhookInputError';
  }
}

/**
 * Checks a receiver URL and returns it as given: an absolute https URL (http only when `allowHttp`), printable
 * ASCII only (no spaces, no backslashes: what a URL parser would silently rewrite), no credentials (they would
 * be listed back), no fragment, and no encoded control characters. Throws {@link WebhookInputError}.
 */
export function checkWebhookUrl(url: string, allowHttp: boolean): string {
  const bad = (why: string) =>
    new WebhookInputError('url', `${quoteInput(url)} is not a usable webhook URL: ${why}`);
  if (url === '') throw new WebhookInputError('url', 'url: Required.');
  if (url.length > MAX_WEBHOOK_URL) throw bad(`longer than ${MAX_WEBHOOK_URL} characters`);
  if (!/^[\x21-\x7e]+$/.test(url))
    throw bad('only printable ASCII without spaces (percent-encode the rest)');
  if (url.includes('\\')) throw bad('a backslash is not allowed');
  if (/%(0[0-9a-f]|1[0-9a-f]|7f)/i.test(url)) throw bad('an encoded control character');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw bad('not an absolute URL');
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:')
    throw bad(`scheme ${parsed.protocol.replace(/:$/, '')} (only https)`);
  if (parsed.protocol === 'http:' && !allowHttp)
    throw bad(
      'http is refused: use https (a server run with PRFLEET_WEBHOOKS_ALLOW_HTTP=true allows http, for tests)',
    );
  if (parsed.hostname === '') throw bad('no host');
  if (parsed.username !== '' || parsed.password !== '')
    throw bad(
      'credentials in the URL (they would be listed back): authenticate with the signature',
    );
  if (url.includes('#')) throw bad('a fragment is never sent to the server');
  return url;
}

/** Checks a signing secret's length. Throws {@link WebhookInputError}. */
export function checkWebhookSecret(secret: string): string {
  const bytes = Buffer.byteLength(secret);
  if (bytes === 0) throw new WebhookInputError('secret', 'secret: Required.');
  if (bytes < SECRET_BYTES.min || bytes > SECRET_BYTES.max)
    throw new WebhookInputError(
      'secret',
      `secret: ${bytes} bytes; between ${SECRET_BYTES.min} and ${SECRET_BYTES.max} (e.g. openssl rand -hex 32)`,
    );
  return secret;
}
