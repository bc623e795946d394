import type { IncomingMessage } from 'node:http';

/**
 * Cookie that may carry a bearer token for GET/HEAD routes and the web view (set HttpOnly, SameSite=Strict by the
 * view's login form).
 */
export const TOKEN_COOKIE = 'prfleet_token';

/** The value of cookie `name` on `req` (trimmed), or undefined when it is not sent. */
export function cookieOf(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
