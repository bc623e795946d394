import { constants as osConstants } from 'node:os';
import { TransportError } from './transport.js';

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(osConstants.errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

/** The number of errno `code` on this platform (0 when it has none). */
export function errnoNumber(code: string): number {
  return (osConstants.errno as Record<string, number | undefined>)[code] ?? 0;
}

/** What an operator can do about an errno from open or ioctl. */
function explanationOf(code: string, operation: 'open' | 'ioctl'): string {
  switch (code) {
    case 'EPERM':
      return operation === 'ioctl'
        ? 'the kernel refused the command: PERSISTENT RESERVE IN/OUT through SG_IO needs CAP_SYS_RAWIO ' +
            '(run the agent as root or grant it with setcap/AmbientCapabilities=CAP_SYS_RAWIO)'
        : 'operation not permitted: the agent needs read-write access to the node and CAP_SYS_RAWIO';
    case 'EACCES':
      return (
        'permission denied: the agent needs read-write access to the node (its owner/group/mode or a udev rule) ' +
        'and CAP_SYS_RAWIO for PERSISTENT RESERVE IN/OUT'
      );
    case 'ENODEV':
    case 'ENXIO':
    case 'ENOENT':
      return 'device node vanished (removed, or the path went away); rescan to rediscover it';
    case 'EBUSY':
      return 'device busy (opened exclusively by another process?)';
    case 'EINVAL':
      return 'the kernel rejected the sg_io_hdr (invalid argument)';
    case 'ENOMEM':
      return 'the kernel could not allocate buffers for the command';
    case 'EIO':
      return 'input/output error from the SCSI layer';
    case 'ENOTTY':
      return 'not an SG_IO-capable node (use /dev/sgN)';
    default:
      return 'system error';
  }
}

/**
 * Turns an errno from open/ioctl into a TransportError whose message says what to do about it: EACCES/EPERM
 * explain CAP_SYS_RAWIO and node permissions; ENODEV/ENXIO/ENOENT say the node vanished.
 */
export function transportErrorFromErrno(
  errno: number,
  path: string,
  operation: 'open' | 'ioctl',
  cause?: unknown,
): TransportError {
  const code = errnoName(errno);
  return new TransportError(
    `${operation} ${path}: ${code}: ${explanationOf(code, operation)}`,
    path,
    errno,
    code,
    cause === undefined ? undefined : { cause },
  );
}

/** Why an async ioctl through koffi failed (the FFI call itself, or the kernel's -1 with errno); undefined if it ran. */
export function ioctlFailure(
  err: unknown,
  rc: number,
  errno: number,
  path: string,
): TransportError | undefined {
  if (err)
    return new TransportError(`ioctl ${path}: koffi call failed`, path, 0, 'EFFI', { cause: err });
  if (rc < 0) return transportErrorFromErrno(errno, path, 'ioctl');
  return undefined;
}
