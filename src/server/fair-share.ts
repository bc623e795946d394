/**
 * Fair share between callers: each principal may hold at most so many open CommandSessions and so many commands
 * in flight (unary command RPCs and session commands together). One caller flooding the server gets
 * RESOURCE_EXHAUSTED; an agent's queue (PRFLEET_AGENT_QUEUE_CAPACITY) stays open to the others.
 */
import { isIP } from 'node:net';
import type { CallContext } from 'nice-grpc-common';
import { ErrorInfo, QuotaFailure, RichServerError } from 'nice-grpc-error-details';
import { Status } from 'nice-grpc-common';
import { ERROR_DOMAIN, ErrorReason } from '../common/errors.js';
import { principalOf } from './auth/middleware.js';
import { peerIdentityOf } from './auth/mtls.js';

/** Limits per principal (0 = unlimited). */
export interface FairShareLimits {
  /** Open CommandSessions per principal. */
  readonly maxSessions: number;
  /** Commands in flight per principal, unary and in sessions. */
  readonly maxCommands: number;
  /** Open FleetService.Watch streams per principal. @default 0 (unlimited) */
  readonly maxWatches?: number;
}

/**
 * Who a caller is for fair share: its token's name, else its client certificate's identity, else (plaintext or
 * TLS without client certificates) the IP address it connects from, without the port: a client opening many
 * connections is still one caller.
 */
export function fairSharePrincipalOf(ctx: Pick<CallContext, 'metadata' | 'peer'>): string {
  const token = principalOf(ctx as CallContext);
  if (token !== undefined) return `token:${token.name}`;
  const certificate = peerIdentityOf(ctx);
  if (certificate !== undefined) return `certificate:${certificate.agentId}`;
  return `peer:${peerHost(ctx.peer)}`;
}

/** The host part of a grpc-js peer string: 'ipv4:127.0.0.1:5000' → '127.0.0.1', 'ipv6:[::1]:5000' → '::1'. */
export function peerHost(peer: string): string {
  // Every call of a connection has the same peer string: the last one answers a busy client without the regexes.
  if (peer === lastPeer) return lastHost;
  const host = hostOf(peer);
  lastPeer = peer;
  lastHost = host;
  return host;
}

let lastPeer = '';
let lastHost = '';

function hostOf(peer: string): string {
  const address = peer.replace(/^(ipv4|ipv6|unix):/, '');
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed !== null) return bracketed[1] as string;
  const colon = address.lastIndexOf(':');
  const host = colon > 0 ? address.slice(0, colon) : address;
  return isIP(host) === 0 ? address : host;
}

/** One unit of a principal's quota; release it exactly once. */
export type Release = () => void;

/** Counts per principal; see {@link createFairShare}. */
export interface FairShare {
  /** Takes a session slot for `principal`, or throws RESOURCE_EXHAUSTED {PRINCIPAL_QUOTA}. */
  openSession(principal: string): Release;
  /** Takes a command slot for `principal`, or throws RESOURCE_EXHAUSTED {PRINCIPAL_QUOTA}. */
  startCommand(principal: string): Release;
  /** Takes a Watch slot for `principal`, or throws RESOURCE_EXHAUSTED {PRINCIPAL_QUOTA}. */
  openWatch(principal: string): Release;
  /** What `principal` holds now (tests, logs). */
  usage(principal: string): { sessions: number; commands: number };
}

/** Creates the per-principal counters for `limits`. */
export function createFairShare(limits: FairShareLimits): FairShare {
  const sessions = new Map<string, number>();
  const commands = new Map<string, number>();
  const watches = new Map<string, number>();
  const take = (
    counts: Map<string, number>,
    principal: string,
    limit: number,
    what: Quota,
  ): Release => {
    const held = counts.get(principal) ?? 0;
    if (limit > 0 && held >= limit) throw quotaExceeded(principal, limit, what);
    counts.set(principal, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const now = (counts.get(principal) ?? 1) - 1;
      if (now === 0) counts.delete(principal);
      else counts.set(principal, now);
    };
  };
  return {
    openSession: (principal) => take(sessions, principal, limits.maxSessions, 'sessions'),
    startCommand: (principal) => take(commands, principal, limits.maxCommands, 'commands'),
    openWatch: (principal) => take(watches, principal, limits.maxWatches ?? 0, 'watches'),
    usage: (principal) => ({
      sessions: sessions.get(principal) ?? 0,
      commands: commands.get(principal) ?? 0,
    }),
  };
}

/** Environment variable of each limit, named in the error so an operator knows what to raise. */
const LIMIT_VARIABLES = {
  sessions: 'PRFLEET_PRINCIPAL_MAX_SESSIONS',
  commands: 'PRFLEET_PRINCIPAL_MAX_COMMANDS',
  watches: 'PRFLEET_PRINCIPAL_MAX_WATCHES',
} as const;

type Quota = keyof typeof LIMIT_VARIABLES;

function quotaExceeded(principal: string, limit: number, what: Quota): RichServerError {
  const description =
    what === 'sessions'
      ? `${principal} already has ${limit} CommandSessions open (${LIMIT_VARIABLES.sessions}): close one first`
      : what === 'watches'
        ? `${principal} already has ${limit} Watch streams open (${LIMIT_VARIABLES.watches}): end one first`
        : `${principal} already has ${limit} commands in flight (${LIMIT_VARIABLES.commands}): wait for their results; nothing was sent`;
  return new RichServerError(Status.RESOURCE_EXHAUSTED, description, [
    ErrorInfo.fromPartial({
      reason: ErrorReason.PRINCIPAL_QUOTA,
      domain: ERROR_DOMAIN,
      metadata: { principal, limit: String(limit), quota: what },
    }),
    QuotaFailure.fromPartial({
      violations: [{ subject: principal, description }],
    }),
  ]);
}
