/** Errors of the store. Messages are lower case and show the value at fault. */

/** Base class of every store error. */
export class StoreError extends Error {
  override name = 'StoreError';
}

/** The embedded data directory is open in another process. */
export class StoreLockedError extends StoreError {
  override name = 'StoreLockedError';
}

/** The database schema cannot be brought to this version (edited or unknown newer migration). */
export class MigrationError extends StoreError {
  override name = 'MigrationError';
}

/** Input refused before touching the database; `field` names it. */
export class StoreInputError extends StoreError {
  override name = 'StoreInputError';
  /** The input field at fault. */
  readonly field: string;
  constructor(field: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.field = field;
  }
}

/** A record that should exist does not. */
export class NotFoundError extends StoreError {
  override name = 'NotFoundError';
}

/** A compare-and-set lost: the record changed since the caller read it. */
export class VersionConflictError extends StoreError {
  override name = 'VersionConflictError';
}

/** No identifier is left in a key-layout field (site codes, or host ids in a site). */
export class KeySpaceExhaustedError extends StoreError {
  override name = 'KeySpaceExhaustedError';
}

/** A journal entry is not in the state the transition needs (e.g. completing a done entry). */
export class JournalStateError extends StoreError {
  override name = 'JournalStateError';
}
