import type { DeviceSource } from './agent.js';
import type { EmulatedFabric, EmulatedHost } from './fabric.js';

/** Options for {@link createSgioSource}. */
export interface SgioSourceOptions {
  /** Also list disks (PDT 00h; LIO's ramdisk/fileio LUs are disks). @default false */
  readonly includeDisks?: boolean;
  /** Root of sysfs (tests). @default '/sys' */
  readonly sysfsRoot?: string;
}

/**
 * Device source for one host of an emulated fabric: its paths (with initiator port and loader) over its
 * transport view. `closeFabric` closes the whole fabric when the agent stops (an agent that owns it alone).
 */
export function createEmulatedSource(
  host: EmulatedHost,
  options: { closeFabric?: EmulatedFabric } = {},
): DeviceSource {
  return {
    transport: host.transport,
    listTargets: async () =>
      host.paths.map((p) => ({
        path: p.path,
        initiatorPort: p.initiatorPort,
        loaderId: p.loaderId,
      })),
    close: () => options.closeFabric?.close(),
  };
}

/**
 * Device source over real /dev/sgN nodes: sysfs lists them (agent/sysfs.ts), SG_IO reaches them
 * (agent/transport/sgio.ts). Both are imported lazily so machines without koffi run the emulated agent.
 */
export async function createSgioSource(options: SgioSourceOptions = {}): Promise<DeviceSource> {
  const [{ createSgioTransport }, { listScsiGenericNodes }] = await Promise.all([
    import('./transport/sgio.js'),
    import('./sysfs.js'),
  ]);
  const transport = createSgioTransport();
  await transport.selfTest();
  return {
    transport,
    async listTargets() {
      const nodes = await listScsiGenericNodes({
        ...(options.includeDisks === undefined ? {} : { includeDisks: options.includeDisks }),
        ...(options.sysfsRoot === undefined ? {} : { sysfsRoot: options.sysfsRoot }),
      });
      return nodes.map((n) => ({
        path: n.path,
        ...(n.initiatorPort ? { initiatorPort: n.initiatorPort } : {}),
      }));
    },
  };
}
