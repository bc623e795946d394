import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import { certificateIssuerDer } from './der.js';

/**
 * Revoked client certificates (agents', and any other the fleet CA signed), in a file the operator keeps
 * (`PRFLEET_TLS_REVOKED`; `prfleet-certs revoke` appends to it). The TLS handshake cannot consult it (grpc-js
 * takes no CRL), so the peer-identity interceptor does, on every call: a revoked certificate gives no identity,
 * agents presenting it are refused at Hello with UNAUTHENTICATED, and the streams of agents already connected
 * with it are ended when the file changes.
 *
 * A certificate is named by what its signature covers, so that no re-encoding of the same certificate escapes
 * (an ECDSA signature (r, s) also verifies as (r, n−s), and the bytes — the SHA-256 fingerprint — differ):
 *
 * - `serial:<issuer-hash>:<serial>`: SHA-256 (hex) of the DER issuer Name, and the serial number in hex;
 * - `spki:<hex>`: SHA-256 of the DER SubjectPublicKeyInfo (revokes every certificate for that key);
 * - `sha256:<hex>` or a bare fingerprint: SHA-256 of the whole certificate, 64 hex digits with or without colons
 *   (as `openssl x509 -fingerprint -sha256` or Node's `X509Certificate.fingerprint256` print them). Kept as
 *   input: a certificate matching a listed fingerprint also revokes its serial and key from then on (in memory,
 *   until the entry leaves the list); `prfleet-certs revoke` writes the serial and key forms.
 *
 * Hex in any case; `#` starts a comment; blank lines are ignored.
 */
export interface RevokedCertificates {
  /** The file the list is read from. */
  readonly file: string;
  /** Entries currently listed. */
  readonly size: number;
  /** True when the certificate with these names is revoked (by fingerprint, serial or key). */
  has(names: CertificateNames): boolean;
  /** Calls `listener` after each reload that changed the list; returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
  /** Stops watching the file. */
  close(): void;
}

/** The names a certificate is revoked by; see {@link RevokedCertificates}. */
export interface CertificateNames {
  /** SHA-256 of the certificate's DER, `AB:CD:…` as Node prints it (changes when the signature is re-encoded). */
  readonly fingerprint256: string;
  /** `spki:<hex>`: SHA-256 of the DER SubjectPublicKeyInfo. */
  readonly spki: string;
  /** `serial:<issuer-hash>:<hex>`: SHA-256 of the DER issuer Name, and the serial number. */
  readonly serial: string;
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** Serial numbers in hex, lower case, without leading zeros (DER may pad a positive serial with 00). */
const normalSerial = (hex: string) => hex.toLowerCase().replace(/^0+(?=.)/, '');

/** The revocation names of a certificate (throws on one Node or the DER reader cannot parse). */
export function certificateNames(certificate: X509Certificate | Uint8Array): CertificateNames {
  const cert =
    certificate instanceof X509Certificate ? certificate : new X509Certificate(certificate);
  const spkiDer = cert.publicKey.export({ type: 'spki', format: 'der' });
  return {
    fingerprint256: cert.fingerprint256,
    spki: `spki:${sha256(spkiDer)}`,
    serial: `serial:${sha256(certificateIssuerDer(cert.raw))}:${normalSerial(cert.serialNumber)}`,
  };
}

/** `AB:CD:…` (Node's fingerprint256 spelling) for any accepted spelling, or undefined when it is none. */
export function normalizeFingerprint(text: string): string | undefined {
  const hex = text
    .replace(/^sha256:/i, '')
    .replace(/:/g, '')
    .toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) return undefined;
  return hex.match(/../g)?.join(':');
}

/** The canonical spelling of one list entry (`AB:CD:…`, `spki:<hex>`, `serial:<hex>:<hex>`), or undefined. */
function normalizeEntry(text: string): string | undefined {
  const spki = /^spki:([0-9a-f]{64})$/i.exec(text);
  if (spki !== null) return `spki:${(spki[1] as string).toLowerCase()}`;
  const serial = /^serial:([0-9a-f]{64}):([0-9a-f]{1,80})$/i.exec(text);
  if (serial !== null)
    return `serial:${(serial[1] as string).toLowerCase()}:${normalSerial(serial[2] as string)}`;
  return normalizeFingerprint(text);
}

/** Parses a revocation list; throws naming the file and line of anything that is not an entry. */
export function parseRevocationList(text: string, file: string): Set<string> {
  const revoked = new Set<string>();
  for (const [index, raw] of text.split('\n').entries()) {
    const line = (raw.split('#', 1)[0] ?? '').trim();
    if (line === '') continue;
    const entry = normalizeEntry(line.split(/\s+/, 1)[0] ?? '');
    if (entry === undefined) {
      throw new Error(
        `${file}:${index + 1}: not a certificate name (sha256:<64 hex>, spki:<64 hex> or serial:<64 hex issuer hash>:<hex serial>): ${JSON.stringify(line.slice(0, 80))}`,
      );
    }
    revoked.add(entry);
  }
  return revoked;
}

/** True when `list` names the certificate by serial, key or fingerprint. */
export function listNames(list: ReadonlySet<string>, names: CertificateNames): boolean {
  return list.has(names.serial) || list.has(names.spki) || list.has(names.fingerprint256);
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
    for (const fingerprint of learned.keys())
      if (!next.has(fingerprint)) learned.delete(fingerprint);
    alsoRevoked = learnedNames();
    if (!changed) return;
    log.info({ file, revoked: revoked.size }, 'certificate revocation list reloaded');
    for (const listener of listeners) listener();
  }, options.pollMs ?? 2_000);
  timer.unref();
  // Serial and key of certificates that matched a listed fingerprint, by that fingerprint: a re-encoding of the
  // same certificate stays refused for as long as the fingerprint is listed.
  const learned = new Map<string, CertificateNames>();
  const learnedNames = () =>
    new Set([...learned.values()].flatMap((names) => [names.serial, names.spki]));
  let alsoRevoked = new Set<string>();
  return {
    file,
    get size() {
      return revoked.size;
    },
    has(names) {
      if (revoked.has(names.fingerprint256) && !learned.has(names.fingerprint256)) {
        learned.set(names.fingerprint256, names);
        alsoRevoked = learnedNames();
        log.info(
          { file, fingerprint: names.fingerprint256, serial: names.serial, spki: names.spki },
          'certificate revoked by fingerprint: its serial and key are refused too (list them to keep that over restarts)',
        );
      }
      return listNames(revoked, names) || listNames(alsoRevoked, names);
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
