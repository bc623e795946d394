import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  ServerCredentials,
  ServerInterceptingCall,
  experimental,
  type Metadata as GrpcMetadata,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import {
  ServerError,
  Status,
  type CallContext,
  type ServerMiddleware,
  type ServerMiddlewareCall,
} from 'nice-grpc-common';
import type { Logger } from 'pino';
import type { Hello } from '../../gen/prfleet/v1/agent.js';
import type { Path } from '../../gen/prfleet/v1/scsi.js';
import { globToRegExp, isNormalPath } from '../../common/device-glob.js';
import {
  certificateNames,
  normalizeFingerprint,
  type CertificateNames,
  type RevokedCertificates,
} from './revocation.js';

/** Agent ids: what `prfleet-certs issue-agent --id` accepts and what a certificate may name. */
export const AGENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** SAN URI naming the agent: `prfleet:agent:<id>` (preferred over the CN when present). */
export const AGENT_URI_PREFIX = 'prfleet:agent:';

/** SAN URI adding a device allow-list entry: `prfleet:allow:<glob>` (matched against path or LU id). */
export const ALLOW_URI_PREFIX = 'prfleet:allow:';

/**
 * SAN URI prefix of a client (not agent) certificate: `prfleet:client:<name>` (`prfleet-certs issue-client`).
 * Such a certificate never names an agent, whatever its CN.
 */
export const CLIENT_URI_PREFIX = 'prfleet:client:';

/** TLS extended key usage OID for client authentication (RFC 5280 §4.2.1.12, id-kp-clientAuth). */
const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** Who a verified agent certificate says its holder is. */
export interface PeerIdentity {
  /** Agent id from SAN URI `prfleet:agent:<id>`, else the subject CN. */
  readonly agentId: string;
  /** Device globs from SAN URIs `prfleet:allow:<glob>`; empty = no restriction. */
  readonly allow: readonly string[];
  /** SHA-256 fingerprint of the certificate (colon-separated hex, as Node prints it). */
  readonly fingerprint256: string;
  /** What the certificate is revoked by (issuer + serial, key, fingerprint). */
  readonly certificate: CertificateNames;
}

/** PEM material for a TLS server. */
export interface TlsMaterial {
  /** Server certificate chain, PEM. */
  readonly cert: string | Buffer;
  /** Server private key, PEM. */
  readonly key: string | Buffer;
  /** CA certificate(s) that sign agent certificates, PEM. */
  readonly ca: string | Buffer;
  /**
   * 'require': the TLS handshake refuses peers without a CA-signed certificate (agents only on this port).
   * 'optional': certificates are asked for and verified if sent, so token-authenticated CLI clients can share
   * the port; AgentService then refuses certificate-less agents itself ({@link authorizeAgentHello}).
   * @default 'require'
   */
  readonly clientCerts?: 'require' | 'optional';
}

/** Options for {@link serverCredentials}: exactly one of `tls` or `plaintext: true`. */
export interface ServerCredentialsOptions {
  /** Serve TLS with these files' contents. */
  readonly tls?: TlsMaterial;
  /** Client certificates no longer accepted (PRFLEET_TLS_REVOKED); TLS only. @default none */
  readonly revoked?: RevokedCertificates;
  /** Serve plaintext h2c: only for tests, loopback, or behind a TLS-terminating proxy. @default false */
  readonly plaintext?: boolean;
}

/** Reads PEM files into {@link TlsMaterial}; throws naming the file that cannot be read. */
export function loadTlsMaterial(files: {
  certFile: string;
  keyFile: string;
  caFile: string;
  clientCerts?: 'require' | 'optional';
}): TlsMaterial {
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new Error(`cannot read TLS ${what} ${file}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  };
  return {
    cert: read(files.certFile, 'certificate'),
    key: read(files.keyFile, 'key'),
    ca: read(files.caFile, 'CA certificate'),
    ...(files.clientCerts === undefined ? {} : { clientCerts: files.clientCerts }),
  };
}

/** Splits a PEM bundle into X509 certificates; throws when it holds none. */
export function parseCertificateBundle(pem: string | Buffer): X509Certificate[] {
  const text = pem.toString();
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error('no PEM certificate found in the CA bundle');
  return blocks.map((block) => new X509Certificate(block));
}

/** Splits Node's `subjectAltName` text ("URI:a, DNS:b", entries JSON-quoted when they hold commas). */
function subjectAltNames(cert: X509Certificate): { type: string; value: string }[] {
  const text = cert.subjectAltName;
  if (text === undefined) return [];
  const names: { type: string; value: string }[] = [];
  const entry = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:,\s*|$)/g;
  for (let m = entry.exec(text); m !== null && m[0] !== ''; m = entry.exec(text)) {
    const raw = m[2] ?? '';
    names.push({
      type: (m[1] ?? '').trim(),
      value: raw.startsWith('"') ? (JSON.parse(raw) as string) : raw,
    });
  }
  return names;
}

function commonNameOf(cert: X509Certificate): string | undefined {
  for (const line of cert.subject.split('\n')) if (line.startsWith('CN=')) return line.slice(3);
  return undefined;
}

/**
 * Reads the agent identity out of a certificate (no signature check; see {@link verifyAgentCertificate}).
 * Returns undefined when the certificate names no valid agent id, or when its SAN URI and CN disagree.
 */
export function identityFromCertificate(cert: X509Certificate): PeerIdentity | undefined {
  const uris = subjectAltNames(cert)
    .filter((n) => n.type === 'URI')
    .map((n) => n.value);
  const uriIds = uris
    .filter((u) => u.startsWith(AGENT_URI_PREFIX))
    .map((u) => u.slice(AGENT_URI_PREFIX.length));
  const cn = commonNameOf(cert);
  if (uris.some((u) => u.startsWith(CLIENT_URI_PREFIX))) return undefined; // a client's, not an agent's
  if (uriIds.length > 1) return undefined;
  const agentId = uriIds[0] ?? cn;
  if (agentId === undefined || !AGENT_ID_PATTERN.test(agentId)) return undefined;
  if (uriIds[0] !== undefined && cn !== undefined && cn !== agentId) return undefined;
  const allow = uris
    .filter((u) => u.startsWith(ALLOW_URI_PREFIX))
    .map((u) => u.slice(ALLOW_URI_PREFIX.length));
  return {
    agentId,
    allow,
    fingerprint256: cert.fingerprint256,
    certificate: certificateNames(cert),
  };
}

/**
 * Verifies that `cert` was issued by one of `cas` (signature and issuer name; CAs issue agent certificates
 * directly, no intermediates), is within its validity period, and allows client authentication when it lists
 * extended key usages. Returns the identity it names, or undefined.
 */
export function verifyAgentCertificate(
  cert: X509Certificate,
  cas: readonly X509Certificate[],
  now = new Date(),
): PeerIdentity | undefined {
  const issuedByCa = cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
  if (!issuedByCa) return undefined;
  const t = now.getTime();
  if (t < Date.parse(cert.validFrom) || t > Date.parse(cert.validTo)) return undefined;
  const eku = cert.keyUsage as string[] | undefined; // Node names the extended key usage list `keyUsage`
  if (eku !== undefined && eku.length > 0 && !eku.includes(EKU_CLIENT_AUTH)) return undefined;
  if (cert.ca) return undefined;
  return identityFromCertificate(cert);
}

/** Metadata keys the peer-identity interceptor sets (and strips from what clients send). */
export const PEER_HEADERS = {
  agentId: 'prfleet-peer-agent-id',
  allow: 'prfleet-peer-allow',
  /** The verified certificate's revocation names (JSON {@link CertificateNames}). */
  fingerprint: 'prfleet-peer-cert-names',
  revoked: 'prfleet-peer-revoked-cert-sha256',
  /** Any client certificate's revocation names (JSON), set when a revocation list is configured (streams re-check it). */
  certificate: 'prfleet-peer-client-cert-names',
  proof: 'prfleet-peer-proof',
} as const;

/** How long a verified client certificate's identity is reused, and how many are kept. */
const VERIFIED_TTL_MS = 60_000;
const MAX_VERIFIED = 10_000;

// Per-process secret: a header carrying it can only have been set by our interceptor, so a client sending
// prfleet-peer-* itself to a server that forgot the interceptor still gets no identity.
const PROOF = randomBytes(16).toString('hex');

/**
 * grpc-js server interceptor: strips any client-sent `prfleet-peer-*` metadata, verifies the TLS peer
 * certificate against `cas` and, when valid, sets the peer headers that {@link peerIdentityOf} reads.
 * {@link serverCredentials} attaches it; servers building their own credentials add it themselves.
 */
export function createPeerIdentityInterceptor(
  cas: readonly X509Certificate[],
  revoked?: RevokedCertificates,
): ServerInterceptor {
  // Verifying a certificate (parse + ECDSA signature + checks) costs ~250 µs and a TLS client sends the same one
  // on every call: verdicts are kept for a minute (never past the certificate's notAfter), bounded in number.
  const verified = new Map<
    string,
    { identity: PeerIdentity; checkedMs: number; validToMs: number }
  >();
  const identityOf = (raw: Buffer): PeerIdentity | undefined => {
    const key = raw.toString('base64');
    const now = Date.now();
    const hit = verified.get(key);
    if (hit !== undefined && now - hit.checkedMs < VERIFIED_TTL_MS && now <= hit.validToMs)
      return hit.identity;
    verified.delete(key);
    let cert: X509Certificate;
    let identity: PeerIdentity | undefined;
    try {
      cert = new X509Certificate(raw);
      identity = verifyAgentCertificate(cert, cas, new Date(now));
    } catch {
      return undefined; // unparsable certificate: no identity
    }
    if (identity !== undefined) {
      if (verified.size >= MAX_VERIFIED) verified.delete(verified.keys().next().value as string);
      verified.set(key, { identity, checkedMs: now, validToMs: Date.parse(cert.validTo) });
    }
    return identity;
  };
  // The revocation names of a certificate cost a parse and two hashes: kept per certificate like the verdicts.
  const named = new Map<string, CertificateNames>();
  const namesOf = (raw: Buffer): CertificateNames => {
    const key = raw.toString('base64');
    let names = named.get(key);
    if (names !== undefined) return names;
    try {
      names = certificateNames(raw);
    } catch {
      // Not parsable (the handshake accepted it, so unlikely): only its fingerprint can name it.
      const hex = createHash('sha256').update(raw).digest('hex');
      names = { fingerprint256: normalizeFingerprint(hex) as string, spki: '', serial: '' };
    }
    if (named.size >= MAX_VERIFIED) named.delete(named.keys().next().value as string);
    named.set(key, names);
    return names;
  };
  /** The peer headers for a connection's TLS client certificate (raw DER; undefined: none). */
  const headersFor = (raw: Buffer | undefined): Map<string, string> => {
    const headers = new Map<string, string>();
    if (raw !== undefined && cas.length > 0 && revoked !== undefined) {
      const names = namesOf(raw);
      headers.set(PEER_HEADERS.proof, PROOF);
      if (revoked.has(names)) {
        // Revoked: no identity, and the handlers are told why (the TLS handshake cannot know).
        headers.set(PEER_HEADERS.revoked, names.fingerprint256);
        return headers;
      }
      // Streams outlive the check made here: their handlers look the certificate up again.
      headers.set(PEER_HEADERS.certificate, JSON.stringify(names));
    }
    if (raw !== undefined && cas.length > 0) {
      const identity = identityOf(raw);
      if (identity !== undefined) {
        headers.set(PEER_HEADERS.agentId, identity.agentId);
        headers.set(PEER_HEADERS.allow, JSON.stringify(identity.allow));
        headers.set(PEER_HEADERS.fingerprint, JSON.stringify(identity.certificate));
        headers.set(PEER_HEADERS.proof, PROOF);
      }
    }
    return headers;
  };
  const interceptor: ServerInterceptor = (_method, call) =>
    new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata: GrpcMetadata, mdNext: (m: GrpcMetadata) => void) {
            for (const key of Object.values(PEER_HEADERS)) metadata.remove(key);
            const raw = call.getAuthContext().sslPeerCertificate?.raw;
            for (const [key, value] of headersFor(raw)) metadata.set(key, value);
            mdNext(metadata);
          },
        });
      },
    });
  peerJudges.set(interceptor, headersFor);
  return interceptor;
}

/** The peer-header function of each interceptor {@link createPeerIdentityInterceptor} made. */
const peerJudges = new WeakMap<
  ServerInterceptor,
  (raw: Buffer | undefined) => Map<string, string>
>();

/**
 * The peer headers (as {@link peerIdentityOf} reads them) that the credentials' peer-identity interceptor gives a
 * connection presenting `raw` (a verified TLS client certificate, DER; undefined: none), for requests that do not
 * pass through grpc-js (the HTTP/1.1 agent link on the same port). No identity without that interceptor.
 */
export function peerHeadersFor(
  credentials: ServerCredentials,
  raw: Buffer | undefined,
): PeerHeaderSource {
  for (const interceptor of credentials._getInterceptors()) {
    const judge = peerJudges.get(interceptor);
    if (judge !== undefined) {
      const headers = judge(raw);
      return { metadata: { get: (key: string) => headers.get(key) } };
    }
  }
  return { metadata: { get: () => undefined } };
}

/**
 * Serves certificates held in memory to grpc-js's certificate-provider credentials. Listeners are called on a
 * later tick: grpc-js registers the server's watcher only after adding its listeners, so a synchronous call
 * would be lost and the server would refuse every handshake.
 */
function staticProvider(update: {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}): experimental.CertificateProvider {
  return {
    addCaCertificateListener(listener) {
      const { ca } = update;
      if (ca !== undefined) queueMicrotask(() => listener({ caCertificate: ca }));
    },
    removeCaCertificateListener() {},
    addIdentityCertificateListener(listener) {
      const { cert, key } = update;
      if (cert !== undefined && key !== undefined) {
        queueMicrotask(() => listener({ certificate: cert, privateKey: key }));
      }
    },
    removeIdentityCertificateListener() {},
  };
}

/**
 * grpc-js server credentials for `server.listen(address, credentials)`. With `tls`: TLS whose client
 * certificates are checked against `tls.ca` (required or optional, see {@link TlsMaterial}) plus the
 * peer-identity interceptor. With `plaintext: true`: insecure h2c (forged peer headers carry no identity: they lack
 * the interceptor's proof). Throws unless exactly one of the two is given: plaintext is never a silent default.
 */
export function serverCredentials(options: ServerCredentialsOptions): ServerCredentials {
  if (options.tls === undefined && options.revoked !== undefined) {
    throw new Error(
      'serverCredentials: a revocation list needs TLS (plaintext has no client certificates)',
    );
  }
  if (options.tls !== undefined && options.plaintext === true) {
    throw new Error('serverCredentials: give either tls or plaintext: true, not both');
  }
  if (options.tls === undefined) {
    if (options.plaintext !== true) {
      throw new Error(
        'serverCredentials: no TLS material given; pass plaintext: true to serve without TLS',
      );
    }
    // No interceptor: without TLS there is no peer certificate, and forged prfleet-peer-* headers carry no
    // identity anyway (peerIdentityOf requires the per-process proof only the interceptor knows). It would
    // only cost every call a grpc-js intercepting layer.
    return ServerCredentials.createInsecure();
  }
  const { cert, key, ca } = options.tls;
  const cas = parseCertificateBundle(ca);
  const caPem = Buffer.from(ca);
  const base =
    (options.tls.clientCerts ?? 'require') === 'require'
      ? ServerCredentials.createSsl(
          caPem,
          [{ cert_chain: Buffer.from(cert), private_key: Buffer.from(key) }],
          true,
        )
      : // grpc-js names the parameters (ca, identity) but its constructor takes (identity, ca): pass identity first.
        experimental.createCertificateProviderServerCredentials(
          staticProvider({ cert: Buffer.from(cert), key: Buffer.from(key) }),
          staticProvider({ ca: caPem }),
          false,
        );
  return experimental.createServerCredentialsWithInterceptors(base, [
    createPeerIdentityInterceptor(cas, options.revoked),
  ]);
}

/** Where the peer headers are read: a nice-grpc CallContext, or a grpc-js call's metadata (agents/stream.ts). */
export interface PeerHeaderSource {
  readonly metadata: { get(key: string): unknown };
}

/**
 * The verified certificate identity of the caller, or undefined when it presented none (or an invalid one,
 * or the server runs without the peer-identity interceptor).
 */
export function peerIdentityOf(ctx: PeerHeaderSource): PeerIdentity | undefined {
  if (ctx.metadata.get(PEER_HEADERS.proof) !== PROOF) return undefined;
  const agentId = ctx.metadata.get(PEER_HEADERS.agentId);
  const namesText = ctx.metadata.get(PEER_HEADERS.fingerprint);
  if (typeof agentId !== 'string' || typeof namesText !== 'string') return undefined;
  const certificate = JSON.parse(namesText) as CertificateNames;
  const allowText = ctx.metadata.get(PEER_HEADERS.allow);
  const allow = typeof allowText === 'string' ? (JSON.parse(allowText) as string[]) : [];
  return { agentId, allow, fingerprint256: certificate.fingerprint256, certificate };
}

/**
 * The SHA-256 fingerprint of the caller's client certificate when it is on the revocation list
 * (PRFLEET_TLS_REVOKED), else undefined.
 */
export function peerRevokedCertificate(ctx: PeerHeaderSource): string | undefined {
  if (ctx.metadata.get(PEER_HEADERS.proof) !== PROOF) return undefined;
  const fingerprint = ctx.metadata.get(PEER_HEADERS.revoked);
  return typeof fingerprint === 'string' ? fingerprint : undefined;
}

/**
 * The revocation names of the caller's client certificate, when the server has a revocation list (so that a
 * stream's handler can check it again later); undefined otherwise.
 */
export function peerCertificateOf(ctx: PeerHeaderSource): CertificateNames | undefined {
  if (ctx.metadata.get(PEER_HEADERS.proof) !== PROOF) return undefined;
  const names = ctx.metadata.get(PEER_HEADERS.certificate);
  return typeof names === 'string' ? (JSON.parse(names) as CertificateNames) : undefined;
}

/**
 * Server middleware for the client-facing services: a caller whose client certificate is revoked is refused
 * (UNAUTHENTICATED) whatever else it presents.
 */
export function refuseRevokedPeers(log: Logger): ServerMiddleware {
  return refusePeers(log, (context) => {
    const revoked = peerRevokedCertificate(context);
    return revoked === undefined
      ? undefined
      : {
          error: new ServerError(
            Status.UNAUTHENTICATED,
            `the client certificate (SHA-256 ${revoked}) is revoked`,
          ),
          logged: { certificate: revoked },
          why: 'revoked client certificate refused',
        };
  });
}

/** A middleware refusing the calls `judge` has a refusal for (logged at info: news, not a bug). */
function refusePeers(
  log: Logger,
  judge: (
    context: CallContext,
  ) => { error: ServerError; logged: Record<string, unknown>; why: string } | undefined,
): ServerMiddleware {
  return async function* refusePeer<Request, Response>(
    call: ServerMiddlewareCall<Request, Response>,
    context: CallContext,
  ) {
    const refusal = judge(context);
    if (refusal !== undefined) {
      log.info({ method: call.method.path, ...refusal.logged }, refusal.why);
      throw refusal.error;
    }
    return yield* call.next(call.request, context);
  };
}

/**
 * Server middleware for the client-facing services of a TLS server without client tokens: a certificate that
 * names an agent may open that agent's stream, not call ControlService or FleetService (a stolen host
 * certificate must not be an admin's). Clients present a client certificate (`prfleet-certs issue-client`).
 */
export function refuseAgentCertificates(log: Logger): ServerMiddleware {
  return refusePeers(log, (context) => {
    const agent = peerIdentityOf(context);
    return agent === undefined
      ? undefined
      : {
          error: new ServerError(
            Status.PERMISSION_DENIED,
            `the certificate of agent ${JSON.stringify(agent.agentId)} may only connect that agent; call with a client certificate (prfleet-certs issue-client) or a token`,
          ),
          logged: { agentId: agent.agentId },
          why: 'agent certificate refused on a client-facing service',
        };
  });
}

/** The agent id named by the caller's verified client certificate, or undefined. */
export function agentIdFromPeer(ctx: PeerHeaderSource): string | undefined {
  return peerIdentityOf(ctx)?.agentId;
}

/** Options for {@link authorizeAgentHello}. */
export interface AgentAuthOptions {
  /** Refuse agents without a verified certificate (true whenever the server serves TLS). */
  readonly requireCertificate: boolean;
  /**
   * Revoked client certificates, asked again at Hello: the interceptor judged the certificate when the stream
   * opened, which may be long before the Hello. @default none
   */
  readonly isRevoked?: (certificate: CertificateNames) => boolean;
}

/**
 * Checks a Hello against the caller's certificate: no certificate → UNAUTHENTICATED (when required); a
 * certificate for another agent id → PERMISSION_DENIED. Returns the identity (undefined when certificates are
 * not required and none was sent). Call it in AgentService.Connect right after reading the Hello.
 */
export function authorizeAgentHello(
  ctx: PeerHeaderSource,
  hello: Pick<Hello, 'agentId'>,
  options: AgentAuthOptions,
): PeerIdentity | undefined {
  const identity = peerIdentityOf(ctx);
  const revoked =
    identity === undefined
      ? peerRevokedCertificate(ctx)
      : options.isRevoked?.(identity.certificate) === true
        ? identity.fingerprint256
        : undefined;
  if (revoked !== undefined) {
    throw new ServerError(
      Status.UNAUTHENTICATED,
      `the agent certificate (SHA-256 ${revoked}) is revoked: issue a new one (prfleet-certs issue-agent)`,
    );
  }
  if (identity === undefined) {
    if (options.requireCertificate) {
      throw new ServerError(
        Status.UNAUTHENTICATED,
        'agents must present a client certificate signed by the fleet CA',
      );
    }
    return undefined;
  }
  if (hello.agentId !== identity.agentId) {
    throw new ServerError(
      Status.PERMISSION_DENIED,
      `certificate is for agent ${JSON.stringify(identity.agentId)}; Hello.agent_id ${JSON.stringify(hello.agentId)} refused`,
    );
  }
  return identity;
}

/**
 * Splits an inventory by the certificate's device allow-list (globs matched against the device node and the LU
 * id). No identity or an empty allow-list allows everything. The server keeps `allowed` and logs `denied`.
 */
export function authorizeInventory(
  identity: PeerIdentity | undefined,
  paths: readonly Path[],
): { allowed: Path[]; denied: Path[] } {
  if (identity === undefined || identity.allow.length === 0)
    return { allowed: [...paths], denied: [] };
  const patterns = identity.allow.map(globToRegExp);
  const allowed: Path[] = [];
  const denied: Path[] = [];
  for (const path of paths) {
    const ok =
      isNormalPath(path.path) &&
      patterns.some((p) => p.test(path.path) || (path.luId !== '' && p.test(path.luId)));
    (ok ? allowed : denied).push(path);
  }
  return { allowed, denied };
}
