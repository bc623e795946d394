import { ServerError, Status } from 'nice-grpc-common';
import { invalidArgument, notFound, quoteInput } from '../../../common/errors.js';
import { KEY_PURPOSE_NAMES, type KeyPurpose } from '../../../common/key-layout.js';
import {
  KeySpaceExhaustedError,
  NotFoundError,
  StoreInputError,
  VersionConflictError,
} from '../../store/index.js';

/** Maps store errors to RPC errors (bad input, unknown record, lost compare-and-set, exhausted key space). */
export function storeErrorToRpc(e: unknown, fieldPrefix = ''): unknown {
  if (e instanceof StoreInputError)
    return invalidArgument(`${fieldPrefix}${snake(e.field)}`, e.message);
  if (e instanceof NotFoundError) return notFound('record', '', e.message);
  if (e instanceof VersionConflictError) return new ServerError(Status.ABORTED, e.message);
  if (e instanceof KeySpaceExhaustedError)
    return new ServerError(Status.RESOURCE_EXHAUSTED, e.message);
  return e;
}

function snake(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Runs a store call, its errors mapped to RPC errors. */
export async function mapStore<T>(fn: () => Promise<T>, fieldPrefix = ''): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw storeErrorToRpc(e, fieldPrefix);
  }
}

/** The key purpose a request names ('' = backup); INVALID_ARGUMENT for any other name. */
export function purposeOf(value: string, field: string): KeyPurpose {
  const purpose = value === '' ? 'backup' : value;
  if (!(KEY_PURPOSE_NAMES as string[]).includes(purpose)) {
    throw invalidArgument(
      field,
      `${quoteInput(value)} is not one of ${KEY_PURPOSE_NAMES.join(', ')}`,
    );
  }
  return purpose as KeyPurpose;
}
