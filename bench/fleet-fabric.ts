// The fleet benches' fabric (bench/fleet.ts, bench/events.ts): one spec, so both measure the same fleet.
import type { FabricInput } from '../agent/fabric.js';

/** `hosts` hosts; host h sees lusPerHost/2 loaders (a SuperLoader changer + an LTO drive each) through one path each. */
export function fabricSpec(hosts: number, lusPerHost: number): FabricInput {
  const loadersPerHost = Math.max(1, Math.floor(lusPerHost / 2));
  const loaders: NonNullable<FabricInput['loaders']> = [];
  const hostSpecs: NonNullable<FabricInput['hosts']> = [];
  for (let h = 0; h < hosts; h++) {
    const port = `sas:0x5006${h.toString(16).padStart(12, '0')}`;
    const paths: { node: string; lu: string; initiatorPort: string; relativeTargetPort: number }[] =
      [];
    for (let l = 0; l < loadersPerHost; l++) {
      const id = `L${h}-${l}`;
      const n = h * loadersPerHost + l;
      loaders.push({
        id,
        changer: {
          id: `${id}-c`,
          profile: 'superloader-changer',
          serial: `PM${n.toString().padStart(10, '0')}`,
        },
        drives: [
          { id: `${id}-d`, profile: 'lto-drive', serial: `HU${n.toString().padStart(10, '0')}` },
        ],
      });
      paths.push({
        node: `/dev/sg${2 * l}`,
        lu: `${id}-c`,
        initiatorPort: port,
        relativeTargetPort: 1,
      });
      paths.push({
        node: `/dev/sg${2 * l + 1}`,
        lu: `${id}-d`,
        initiatorPort: port,
        relativeTargetPort: 1,
      });
    }
    hostSpecs.push({ id: `host-${h}`, site: 'bench', initiatorPorts: [port], paths });
  }
  return { loaders, hosts: hostSpecs };
}
