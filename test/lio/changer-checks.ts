/** Names of the in-VM checks on the TCM-User medium changer, in run order (shared by the guest part and the host-side test). */
export const CHANGER_CHECKS = [
  'the TCM-User changer LU answers through three nexuses as a medium changer (PDT 08h)',
  'discovery finds one changer LU through three paths, next to the LIO disk it names as its drive',
  'mtx status and prfleet (READ ELEMENT STATUS through the agent) agree on every element',
  'after MOVE MEDIUM through mtx, mtx and prfleet agree again',
  'sg_persist and prfleet agree on the PR state (LIO core), and the loader view names the holder',
  'READ ELEMENT STATUS from a non-holder under exclusive access is a RESERVATION CONFLICT from LIO core',
  'under write exclusive LIO classes changer commands by data direction: MOVE MEDIUM from a non-registrant passes',
] as const;

/** One of the check names. */
export type ChangerCheckName = (typeof CHANGER_CHECKS)[number];

/** Scenario ids on the changer are reported with this prefix, next to the same scenario on the disk LU. */
export const CHANGER_SCENARIO_PREFIX = 'changer:';
