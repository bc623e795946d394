// A changer's READ ELEMENT STATUS that contradicts itself (a lying agent with a valid certificate, or a broken
// changer): one element address reported twice, or two data transfer elements naming one drive, against a real
// server with PostgreSQL. Found: the view was taken as it came, so ListLoaders listed the drive twice (drive 0 and
// a phantom drive 1, both at element 0x1, each with its own cartridge: `prfleet who-holds loader1:1` answered for
// it) and the audit raised a cartridge finding for each. Such a view is now refused whole with an error naming
// the contradiction, as an undecodable one is: the loader is grouped by the loader id agents report, no
// cartridge is claimed and no element finding raised.
import { describe, expect, it } from 'vitest';
import { ElementType } from '../../src/scsi/index.js';
import {
  descriptor,
  driveElement,
  elementPages,
  lyingChanger,
  raised,
  DRIVE,
} from './lying-changer.js';

const storage = (address: number) => ({
  elementType: ElementType.STORAGE,
  pvoltag: true,
  avoltag: false,
  descriptors: [descriptor(address)],
});
const drives = (...descriptors: ReturnType<typeof driveElement>[]) => ({
  elementType: ElementType.DATA_TRANSFER,
  pvoltag: true,
  avoltag: false,
  descriptors,
});

const CONTRADICTIONS = [
  [
    'one address twice',
    [drives(driveElement(1, 'AAA001'), driveElement(1, 'ZZZ999'))],
    /element address 0x1 reported twice/,
  ],
  [
    'a drive and a slot at one address',
    [drives(driveElement(1, 'AAA001')), storage(1)],
    /element address 0x1 reported twice/,
  ],
  [
    'two drive elements naming one drive',
    [drives(driveElement(1, 'AAA001'), driveElement(2, 'ZZZ999'))],
    /elements 0x1 and 0x2 name one drive \(naa\.5000e11100000002\)/,
  ],
] as const;

describe('an element status that contradicts itself', () => {
  it.each(CONTRADICTIONS)('(%s) is refused whole, naming why', async (_, pages, why) => {
    const { fleet } = await lyingChanger(elementPages([...pages]));
    const { loaders } = await fleet.listLoaders({ refresh: true });
    expect(loaders).toHaveLength(1);
    const [loader] = loaders;
    expect(loader?.error).toMatch(why);
    expect(loader?.grouping).toBe('reported-loader-id');
    expect(loader?.drives.map((d) => [d.luId, d.full, d.barcode])).toEqual([[DRIVE, false, '']]);
    for await (const _ of fleet.audit({}));
    expect(await raised(fleet, 'cartridge_stranded', 2_000)).toBeUndefined();
  });

  it('a consistent one is taken (the drive at 0x1 with its cartridge)', async () => {
    const { fleet } = await lyingChanger(
      elementPages([drives(driveElement(1, 'AAA001')), storage(0x20)]),
    );
    const { loaders } = await fleet.listLoaders({ refresh: true });
    expect(loaders[0]?.error).toBe('');
    expect(loaders[0]?.drives.map((d) => [d.luId, d.full, d.barcode])).toEqual([
      [DRIVE, true, 'AAA001'],
    ]);
  });
});
