import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';

/**
 * Revoked client certificates (agents', and any other the fleet CA signed), named by their SHA-256 fingerprint in
 * a file the operator keeps (`PRFLEET_TLS_REVOKED`; `prfleet-certs revoke` appends to it). The TLS handshake
 * cannot consult it (grpc-js takes no CRL), so the peer-identity interceptor does, on every call: a revoked
 * certificate gives no identity, agents presenting it are refused at Hello with UNAUTHENTICATED, and the streams
 * of agents already connected with it are ended when the file changes.
 *
 * Format: one fingerprint per line, 64 hex digits with or without colons (as `openssl x509 -fingerprint
 * -sha256` or Node's `X509Certificate.fingerprint256` print them), any case; `#` starts a comment; blank lines
 * are ignored.
 */
export interface RevokedCertificates {
  /** The file the list is read from. */
  readonly file: string;
  /** Fingerprints currently revoked. */
  readonly size: number;
  /** True when the certificate with this SHA-256 fingerprint is revoked (any of the accepted spellings). */
  has(fingerprint256: string): boolean;
  /** Calls `listener` after each reload that changed the list; returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
  /** Stops watching the file. */
  close(): void;
}

/** `AB:CD:…` (Node's fingerprint256 spelling) for any accepted spelling, or undefined when it is none. */
export function normalizeFingerprint(text: string): string | undefined {
  const hex = text.replace(/:/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) return undefined;
  return hex.match(/../g)?.join(':');
}

/** Parses a revocation list; throws naming the file and line of anything that is not a fingerprint. */
export function parseRevocationList(text: string, file: string): Set<string> {
  const revoked = new Set<string>();
  for (const [index, raw] of text.split('\n').entries()) {
    const line = (raw.split('#', 1)[0] ?? '').trim();
    if (line === '') continue;
    const fingerprint = normalizeFingerprint(line.split(/\s+/, 1)[0] ?? '');
    if (fingerprint === undefined) {
      throw new Error(
        `${file}:${index + 1}: not a SHA-256 certificate fingerprint (64 hex digits, colons optional): ${JSON.stringify(line.slice(0, 80))}`,
      );
    }
    revoked.add(fingerprint);
  }
  return revoked;
}

/** Options of {@link watchRevocationList}. */
export interface WatchOptions {
  /** Logger (reloads at info, a file that cannot be read or parsed at error). */
  readonly log: Logger;
  /** How often the file's size and modification time are checked, ms. @default 2000 */
  readonly pollMs?: number;
}

/**
 * Reads `file` now (throws when it cannot be read or parsed: a server must not start with a revocation list it
 * cannot apply) and re-reads it whenever its size or modification time changes. A later read or parse failure
 * keeps the list in force and logs an error, so revoked certificates stay revoked while the file is fixed.
 */
export function watchRevocationList(file: string, options: WatchOptions): RevokedCertificates {
  const { log } = options;
  const stamp = () => {
    const s = statSync(file);
    return `${s.size}:${s.mtimeMs}`;
  };
  let seen = stamp();
  let revoked = parseRevocationList(readFileSync(file, 'utf8'), file);
  const listeners = new Set<() => void>();
  log.info({ file, revoked: revoked.size }, 'certificate revocation list loaded');
  const timer = setInterval(() => {
    let next: Set<string>;
    try {
      const now = stamp();
      if (now === seen) return;
      seen = now;
      next = parseRevocationList(readFileSync(file, 'utf8'), file);
    } catch (e) {
      log.error(
        { err: e, file, inForce: revoked.size },
        'certificate revocation list not reloaded',
      );
      return;
    }
    const changed = next.size !== revoked.size || [...next].some((f) => !revoked.has(f));
    revoked = next;
    if (!changed) return;
    log.info({ file, revoked: revoked.size }, 'certificate revocation list reloaded');
    for (const listener of listeners) listener();
  }, options.pollMs ?? 2_000);
  timer.unref();
  return {
    file,
    get size() {
      return revoked.size;
    },
    has(fingerprint256) {
      const normal = normalizeFingerprint(fingerprint256);
      return normal !== undefined && revoked.has(normal);
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      clearInterval(timer);
      listeners.clear();
    },
  };
}
