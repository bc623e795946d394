import { onTestFinished } from 'vitest';
import { createLogger, type Logger } from '../../src/common/logger.js';
import {
  startEmulatedFleet,
  type EmulatedFleet,
  type EmulatedFleetOptions,
} from '../../agent/fleet.js';

/** Options for {@link startEmulatedAgents}. */
export interface StartEmulatedAgentsOptions extends Omit<EmulatedFleetOptions, 'log' | 'fabric'> {
  /** Fabric file, spec or built fabric. @default examples/fabric-demo.yaml */
  readonly fabric?: EmulatedFleetOptions['fabric'];
  /** Logger. @default silent unless PRFLEET_TEST_LOG=debug|info|… */
  readonly log?: Logger;
  /** Keep running after the test (caller stops). @default false */
  readonly keepAlive?: boolean;
}

/** Path of the demo fabric (3 hosts, 2 SuperLoaders, host-a multipath to loader 1's changer). */
export const DEMO_FABRIC = new URL('../../examples/fabric-demo.yaml', import.meta.url).pathname;

/**
 * Starts every host of an emulated fabric (default: the demo fabric) as an in-process agent connected to
 * `address`, sharing one emulator, and resolves when all are connected. Stopped when the test finishes.
 */
export async function startEmulatedAgents(
  options: StartEmulatedAgentsOptions,
): Promise<EmulatedFleet> {
  const level = process.env['PRFLEET_TEST_LOG'];
  const log =
    options.log ??
    createLogger({ level: (level as 'debug' | undefined) ?? 'silent', name: 'test-agents' });
  const fleet = await startEmulatedFleet({
    ...options,
    fabric: options.fabric ?? DEMO_FABRIC,
    log,
    agentOptions: {
      plaintext: true,
      backoff: { initialMs: 50, maxMs: 1000 },
      drainMs: 2000,
      ...options.agentOptions,
    },
  });
  if (options.keepAlive !== true) onTestFinished(() => fleet.stop());
  return fleet;
}
