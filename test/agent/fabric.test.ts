import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createEmulatedFabric,
  FabricError,
  loadFabric,
  parseFabric,
  type FabricInput,
} from '../../agent/fabric.js';

const minimal = (): FabricInput => ({
  loaders: [
    {
      id: 'l1',
      changer: { id: 'l1-changer', profile: 'superloader-changer', serial: 'PM1' },
      drives: [{ id: 'l1-drive', profile: 'lto-drive', serial: 'HU1' }],
    },
  ],
  hosts: [
    {
      id: 'h1',
      initiatorPorts: ['sas:0x5000000000000001'],
      paths: [
        {
          node: '/dev/sg0',
          lu: 'l1-changer',
          initiatorPort: 'sas:0x5000000000000001',
          relativeTargetPort: 1,
        },
      ],
    },
  ],
});

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FabricError);
    return (e as FabricError).field;
  }
  throw new Error('expected a FabricError');
}

describe('fabric spec', () => {
  it('loads the demo fabric: 3 hosts, 2 loaders, host-a with two paths to loader 1 changer', async () => {
    const spec = await loadFabric(
      new URL('../../examples/fabric-demo.yaml', import.meta.url).pathname,
    );
    expect(spec.hosts.map((h) => h.id)).toEqual(['host-a', 'host-b', 'host-c']);
    expect(spec.loaders).toHaveLength(2);
    const hostA = spec.hosts[0]!;
    expect(hostA.paths.filter((p) => p.lu === 'loader1-changer')).toHaveLength(2);
  });

  it('names the field of a path to an unknown LU', () => {
    const input = minimal();
    input.hosts[0]!.paths![0]!.lu = 'nope';
    expect(fieldOf(() => parseFabric(input))).toBe('hosts[0].paths[0].lu');
  });

  it('names the field of an initiator port the host does not have', () => {
    const input = minimal();
    input.hosts[0]!.paths![0]!.initiatorPort = 'sas:0x5000000000000002';
    expect(fieldOf(() => parseFabric(input))).toBe('hosts[0].paths[0].initiatorPort');
  });

  it('names the field of an unparsable TransportID', () => {
    const input = minimal();
    input.hosts[0]!.initiatorPorts = ['sas:banana'];
    expect(fieldOf(() => parseFabric(input))).toBe('hosts[0].initiatorPorts[0]');
  });

  it('names the field of a relative target port the LU lacks', () => {
    const input = minimal();
    input.hosts[0]!.paths![0]!.relativeTargetPort = 7;
    expect(() => parseFabric(input)).toThrow(/has no relative target port 7/);
    expect(fieldOf(() => parseFabric(input))).toBe('hosts[0].paths[0].relativeTargetPort');
  });

  it('refuses a duplicate LU id, a duplicate node and an unknown profile', () => {
    const dupLu = minimal();
    dupLu.loaders[0]!.drives![0]!.id = 'l1-changer';
    expect(fieldOf(() => parseFabric(dupLu))).toBe('loaders[0].drives[0].id');

    const dupNode = minimal();
    dupNode.hosts[0]!.paths!.push({
      node: '/dev/sg0',
      lu: 'l1-drive',
      initiatorPort: 'sas:0x5000000000000001',
    });
    expect(fieldOf(() => parseFabric(dupNode))).toBe('hosts[0].paths[1].node');

    const badProfile = minimal() as { loaders: { changer: { profile: string } }[] };
    badProfile.loaders[0]!.changer.profile = 'hp-drive';
    expect(fieldOf(() => parseFabric(badProfile))).toBe('loaders[0].changer.profile');
  });

  it('refuses the same initiator port on two hosts', () => {
    const input = minimal();
    input.hosts.push({ id: 'h2', initiatorPorts: ['sas:0x5000000000000001'] });
    expect(() => parseFabric(input)).toThrow(/already belongs to host h1/);
    expect(fieldOf(() => parseFabric(input))).toBe('hosts[1].initiatorPorts[0]');
  });

  it('refuses unknown keys, naming them', () => {
    const input = { ...minimal(), extra: true };
    expect(() => parseFabric(input)).toThrow(/extra/);
  });

  it('reports YAML syntax errors and missing files with the file name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fabric-'));
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'loaders: [\n  - id: x\n');
    await expect(loadFabric(file)).rejects.toThrow(/bad\.yaml/);
    await expect(loadFabric(join(dir, 'missing.yaml'))).rejects.toThrow(/cannot read fabric file/);
  });

  it('builds one emulator shared by every host', async () => {
    const fabric = createEmulatedFabric(
      await loadFabric(new URL('../../examples/fabric-demo.yaml', import.meta.url).pathname),
    );
    expect(
      fabric.emulator
        .logicalUnits()
        .map((lu) => lu.id)
        .sort(),
    ).toEqual(['loader1-changer', 'loader1-drive', 'loader2-changer', 'loader2-drive']);
    expect(fabric.host('host-a').paths).toHaveLength(5);
    expect(() => fabric.host('host-z')).toThrow(/no host host-z/);
    fabric.close();
  });
});
