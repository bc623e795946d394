import type { Logger } from 'pino';
import type { Store } from '../store/store.js';
import { createDbTokenStore } from '../store/tokens.js';
import type { TokenSource } from './config.js';
import { createRegistryKeyCheck } from './key-ownership.js';
import type { OperatorKeyCheck } from './middleware.js';
import { createFileTokenStore, type TokenStore } from './tokens.js';

/** Options for {@link createStoreBoundAuth}. */
export interface StoreBoundAuthOptions {
  /** Where tokens live (SecurityConfig.tokenSource). */
  readonly tokenSource: TokenSource;
  /** The token file, for 'file'. */
  readonly tokensFile?: string;
  /** Logs which key check is in force once the store is known. */
  readonly log?: Logger;
}

/** Token store and operator key check for the auth middleware, usable before the server has opened its store. */
export interface StoreBoundAuth {
  /** For createAuthMiddleware({ tokens }). 'database': waits for {@link bind}. */
  readonly tokens: TokenStore;
  /** For createAuthMiddleware({ isOperatorKeyAllowed }): the store's key registry; waits for {@link bind}. */
  readonly isOperatorKeyAllowed: OperatorKeyCheck;
  /**
   * Hands over the server's store (undefined with the memory store) once it is open, before the server
   * listens. Calls arriving earlier wait. Without a store, operators may use any key (there is no registry;
   * logged as a warning) and 'database' tokens are an error. Later calls are ignored.
   */
  bind(store: Store | undefined): void;
}

/**
 * The server opens its store inside createPrfleetServer, after the middlewares are built; this defers the
 * store-backed parts (token table, key registry) until {@link StoreBoundAuth.bind}.
 */
export function createStoreBoundAuth(options: StoreBoundAuthOptions): StoreBoundAuth {
  let resolveStore: (store: Store | undefined) => void = () => undefined;
  const ready = new Promise<Store | undefined>((resolve) => (resolveStore = resolve));
  let bound = false;
  let dbTokens: TokenStore | undefined;
  let keyCheck: OperatorKeyCheck | undefined;

  const tokensFromDb = async (): Promise<TokenStore> => {
    const store = await ready;
    if (store === undefined) throw new Error('token source "database" needs a durable store');
    dbTokens ??= createDbTokenStore(store.db);
    return dbTokens;
  };
  const tokens: TokenStore =
    options.tokenSource === 'file'
      ? createFileTokenStore(requireFile(options.tokensFile))
      : {
          find: async (id) => (await tokensFromDb()).find(id),
          list: async () => (await tokensFromDb()).list(),
          add: async (record) => (await tokensFromDb()).add(record),
          revoke: async (id, at) => (await tokensFromDb()).revoke(id, at),
        };

  return {
    tokens,
    async isOperatorKeyAllowed(principal, key, use) {
      const store = await ready;
      if (store === undefined) return true;
      keyCheck ??= createRegistryKeyCheck(store.keys);
      return keyCheck(principal, key, use);
    },
    bind(store) {
      if (bound) return;
      bound = true;
      if (store === undefined) {
        if (options.tokenSource === 'database') {
          throw new Error(
            'token source "database" needs a durable store; the server runs with PRFLEET_STORE=memory',
          );
        }
        options.log?.warn(
          'auth: no durable store, so no key registry: operators may REGISTER/RESERVE/RELEASE with any key (run with PGlite or PostgreSQL to tie keys to owners)',
        );
      } else {
        options.log?.info(
          {
            tokens: options.tokenSource === 'database' ? `database (${store.location})` : 'file',
            operatorKeys: 'key registry owner',
          },
          'auth: client tokens and operator keys',
        );
      }
      resolveStore(store);
    },
  };
}

function requireFile(file: string | undefined): string {
  if (file === undefined)
    throw new Error('token source "file" needs a token file (PRFLEET_TOKENS_FILE)');
  return file;
}
