import { ChannelCredentials } from '@grpc/grpc-js';
import { Status } from 'nice-grpc-common';
import { ClientError } from 'nice-grpc';
import { onTestFinished } from 'vitest';
import type {
  Command,
  ConnectRequest,
  ConnectResponse,
  Welcome,
} from '../../src/gen/prfleet/v1/agent.js';
import type { DeepPartial } from '../../src/gen/prfleet/v1/agent.js';
import type { CommandResult } from '../../src/gen/prfleet/v1/scsi.js';
import {
  DeviceCapabilities,
  Outcome,
  Path,
  PrinAction,
  ProutAction,
  PrType,
} from '../../src/gen/prfleet/v1/scsi.js';
import { createAgentClient, type AgentClient } from '../../src/common/client.js';
import { AsyncQueue } from '../../src/common/async-queue.js';

/** How a fake agent's stream ended. */
export type StreamEnd =
  { readonly ok: true } | { readonly ok: false; readonly code: Status; readonly details: string };

/** Capabilities like a SuperLoader changer's: no REGISTER AND MOVE, no ALL_TG_PT/SPEC_I_PT, WE and EA only. */
export const CHANGER_CAPS = DeviceCapabilities.fromPartial({
  profile: 'superloader-changer',
  proutActions: [
    ProutAction.PROUT_ACTION_REGISTER,
    ProutAction.PROUT_ACTION_RESERVE,
    ProutAction.PROUT_ACTION_RELEASE,
    ProutAction.PROUT_ACTION_CLEAR,
    ProutAction.PROUT_ACTION_PREEMPT,
    ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT,
    ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY,
  ],
  prinActions: [
    PrinAction.PRIN_ACTION_READ_KEYS,
    PrinAction.PRIN_ACTION_READ_RESERVATION,
    PrinAction.PRIN_ACTION_REPORT_CAPABILITIES,
  ],
  types: [PrType.PR_TYPE_WRITE_EXCLUSIVE, PrType.PR_TYPE_EXCLUSIVE_ACCESS],
});

/** A path to `luId` as an agent would report it. */
export function fakePath(path: string, luId: string, extra: DeepPartial<Path> = {}): Path {
  return Path.fromPartial({
    path,
    luId,
    peripheralDeviceType: 8,
    vendor: 'QUANTUM',
    product: 'SuperLoader3',
    revision: '0100',
    serial: `SN-${luId}`,
    loaderId: 'loader1',
    capabilities: CHANGER_CAPS,
    online: true,
    ...extra,
  });
}

/** The Hello and inventory a hand-spoken agent `evil` opens a link with: one changer path to `luId`. */
export function evilHelloAndInventory(luId: string): [ConnectRequest, ConnectRequest] {
  return [
    {
      message: {
        $case: 'hello',
        value: {
          agentId: 'evil',
          hostname: 'evil',
          version: 't',
          site: '',
          labels: {},
          transport: 'emulated',
          acceptsCommandBatches: false,
        },
      },
    },
    {
      message: {
        $case: 'inventory',
        value: { paths: [fakePath('/dev/sg0', luId, { capabilities: CHANGER_CAPS })] },
      },
    },
  ];
}

/** A scripted agent speaking AgentService over a real stream; the test decides every answer. */
export interface FakeAgent {
  /** The Welcome the server sent. */
  readonly welcome: Welcome;
  /** Every message received so far (welcome included). */
  readonly received: ConnectResponse[];
  /** Sends one message to the server. */
  send(message: DeepPartial<ConnectRequest>): void;
  /** Sends an Inventory with these paths. */
  sendInventory(paths: Path[]): void;
  /** Resolves with the next Command not yet taken (waits up to `timeoutMs`). */
  nextCommand(timeoutMs?: number): Promise<Command>;
  /** Sends a result for `command` (command_id copied; outcome GOOD unless given). */
  respond(command: Command, result?: DeepPartial<CommandResult>): void;
  /** Command ids the server cancelled. */
  cancels(): string[];
  /** True once a Reconnect arrived. */
  reconnectRequested(): boolean;
  /** Half-closes the agent's side (a clean goodbye). */
  end(): void;
  /** Cancels the call (the process died). */
  kill(): void;
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<StreamEnd>;
}

/** Options for {@link connectFakeAgent}. */
export interface FakeAgentOptions {
  /** Agent id. */
  readonly agentId: string;
  /** Site. @default 'dc1' */
  readonly site?: string;
  /** Labels. @default {} */
  readonly labels?: Record<string, string>;
  /** Paths sent as the first Inventory right after Welcome. @default none sent */
  readonly paths?: Path[];
  /** Send a first message that is not Hello (protocol test). @default false */
  readonly skipHello?: boolean;
  /** Reuse a client (several agents on one channel). @default a new one, closed when the test finishes */
  readonly client?: AgentClient;
  /**
   * TLS credentials of a new client (a malicious agent holding a fleet certificate: see {@link tlsAs}).
   * @default plaintext
   */
  readonly credentials?: ChannelCredentials;
}

/** TLS credentials presenting `pem` (certificate and key), trusting the fleet CA `ca`. */
export function tlsAs(ca: string, pem: { cert: string; key: string }): ChannelCredentials {
  return ChannelCredentials.createSsl(Buffer.from(ca), Buffer.from(pem.key), Buffer.from(pem.cert));
}

/** Connects a fake agent to `address`; resolves after Welcome (and after the Inventory is sent, if any). */
export async function connectFakeAgent(
  address: string,
  options: FakeAgentOptions,
): Promise<FakeAgent> {
  const client =
    options.client ??
    createAgentClient(
      address,
      options.credentials === undefined ? {} : { credentials: options.credentials },
    );
  if (options.client === undefined) onTestFinished(() => client.close());
  const outgoing = new AsyncQueue<DeepPartial<ConnectRequest>>(Number.MAX_SAFE_INTEGER);
  const abort = new AbortController();
  const received: ConnectResponse[] = [];
  const commands: Command[] = [];
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const waitFor = async <T>(
    check: () => T | undefined,
    timeoutMs: number,
    what: string,
  ): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = check();
      if (value !== undefined) return value;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`fake agent ${options.agentId}: no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, Math.min(left, 50));
      });
    }
  };

  if (options.skipHello === true) outgoing.push({ message: { $case: 'heartbeat', value: {} } });
  else {
    outgoing.push({
      message: {
        $case: 'hello',
        value: {
          agentId: options.agentId,
          hostname: `${options.agentId}.example`,
          version: 'fake-1',
          site: options.site ?? 'dc1',
          labels: options.labels ?? {},
          transport: 'emulated',
        },
      },
    });
  }
  let ended = false;
  const endedPromise = (async (): Promise<StreamEnd> => {
    try {
      for await (const message of client.connect(outgoing, { signal: abort.signal })) {
        received.push(message);
        if (message.message?.$case === 'command') commands.push(message.message.value);
        notify();
      }
      return { ok: true };
    } catch (e) {
      if (e instanceof ClientError) return { ok: false, code: e.code, details: e.details };
      return { ok: false, code: Status.CANCELLED, details: String(e) };
    } finally {
      ended = true;
      outgoing.close();
      notify();
    }
  })();
  onTestFinished(() => {
    outgoing.close();
    abort.abort();
  });

  const first = await waitFor(
    () => {
      const w = received.find((m) => m.message?.$case === 'welcome');
      if (w?.message?.$case === 'welcome') return { welcome: w.message.value };
      return ended ? { welcome: undefined } : undefined;
    },
    5_000,
    'welcome',
  );
  if (first.welcome === undefined) {
    const end = await endedPromise;
    throw Object.assign(new Error(`stream ended before welcome: ${JSON.stringify(end)}`), { end });
  }
  const welcome = first.welcome;
  if (options.paths !== undefined)
    outgoing.push({ message: { $case: 'inventory', value: { paths: options.paths } } });

  let taken = 0;
  return {
    welcome,
    received,
    send: (message) => void outgoing.push(message),
    sendInventory: (paths) =>
      void outgoing.push({ message: { $case: 'inventory', value: { paths } } }),
    nextCommand: (timeoutMs = 5_000) =>
      waitFor(
        () => (taken < commands.length ? commands[taken++] : undefined),
        timeoutMs,
        'command',
      ),
    respond: (command, result = {}) =>
      void outgoing.push({
        message: {
          $case: 'result',
          value: {
            outcome: Outcome.OUTCOME_GOOD,
            statusName: 'GOOD',
            agentId: options.agentId,
            path: command.path,
            ...result,
            commandId: command.commandId,
          },
        },
      }),
    cancels: () =>
      received.flatMap((m) => (m.message?.$case === 'cancel' ? [m.message.value.commandId] : [])),
    reconnectRequested: () => received.some((m) => m.message?.$case === 'reconnect'),
    end: () => outgoing.close(),
    kill: () => abort.abort(),
    ended: endedPromise,
  };
}

/**
 * Answers the two reads a repeat of an UNKNOWN PROUT sends to settle it (READ KEYS and READ RESERVATION, in
 * either order) with `generation`, `keys` and no reservation; returns the kinds of every command sent so far.
 */
export async function answerReconcileReads(
  agent: FakeAgent,
  generation: number,
  keys: bigint[] = [],
): Promise<string[]> {
  for (let i = 0; i < 2; i++) {
    const read = await agent.nextCommand();
    if (read.kind?.$case !== 'prin') throw new Error(`expected a PRIN, got ${read.kind?.$case}`);
    agent.respond(
      read,
      read.kind.value.action === PrinAction.PRIN_ACTION_READ_KEYS
        ? { data: { $case: 'readKeys', value: { generation, keys } } }
        : { data: { $case: 'readReservation', value: { generation, reserved: false } } },
    );
  }
  return agent.received.flatMap((m) =>
    m.message?.$case === 'command' ? [m.message.value.kind?.$case ?? ''] : [],
  );
}
