/** Names of the in-VM gRPC checks, in run order (shared by the guest part and the host-side test). */
export const GRPC_CHECKS = [
  'two sgio agents connect and report one LIO LU through three paths',
  'REGISTER through every path is GOOD',
  'READ KEYS lists the three keys',
  'RESERVE (exclusive access) through host a is GOOD',
  'RESERVE through host b is a RESERVATION CONFLICT result (status 18h) and the RPC succeeds',
  'READ RESERVATION through host c shows host a as the holder',
  'PREEMPT of host a by host b is GOOD',
  'host a sees REGISTRATIONS PREEMPTED (2Ah/05h) once, then the keys of b and c',
  'CLEAR through host b leaves no keys',
  'an SPC-2 RESERVE(6) through nexus 2 is named with its holder: PRIN conflicts everywhere, TEST UNIT READY passes only through nexus 2',
  'a logical unit reset from agent vm-a (SG_SCSI_RESET) breaks the SPC-2 reservation, and a 29h unit attention follows',
  'a vanished node is an OS error result and its agent keeps serving its other node',
] as const;

/** One of the check names. */
export type GrpcCheckName = (typeof GRPC_CHECKS)[number];
