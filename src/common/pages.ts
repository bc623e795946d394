import type {
  Agent,
  ListAgentsRequest,
  ListAgentsResponse,
  ListDevicesRequest,
  ListDevicesResponse,
  LogicalUnit,
} from '../gen/prfleet/v1/control.js';
import type {
  KeyRecord,
  ListKeysRequest,
  ListKeysResponse,
  ListLoadersRequest,
  ListLoadersResponse,
  Loader,
} from '../gen/prfleet/v1/fleet.js';

/**
 * Listings come in pages bounded by count and bytes (the server stops a page before its byte budget, well under
 * the 4 MiB a client accepts): these follow next_page_token to the end, for callers that want everything.
 */

/** Most pages followed: a server handing out tokens forever is a bug, not a fleet. */
const MAX_PAGES = 100_000;

/** Every item of a paged listing: `fetchPage(token)` from '' until a page comes back without a token. */
export async function followPages<T>(
  fetchPage: (pageToken: string) => Promise<{ items: readonly T[]; nextPageToken: string }>,
): Promise<T[]> {
  const items: T[] = [];
  let token = '';
  for (let pages = 0; pages < MAX_PAGES; pages++) {
    const page = await fetchPage(token);
    items.push(...page.items);
    if (page.nextPageToken === '') return items;
    if (page.nextPageToken === token)
      throw new Error(`the server returned the same page token twice (${token.slice(0, 32)})`);
    token = page.nextPageToken;
  }
  throw new Error(`a listing of more than ${MAX_PAGES} pages`);
}

/** What a ControlService client offers for the two inventory listings (any call options). */
interface InventoryLister<O> {
  listAgents(request: Partial<ListAgentsRequest>, options?: O): Promise<ListAgentsResponse>;
  listDevices(request: Partial<ListDevicesRequest>, options?: O): Promise<ListDevicesResponse>;
}

/** Every agent ListAgents lists for `request`, page by page. */
export function listAllAgents<O>(
  client: Pick<InventoryLister<O>, 'listAgents'>,
  request: Partial<ListAgentsRequest> = {},
  options?: O,
): Promise<Agent[]> {
  return followPages(async (pageToken) => {
    const page = await client.listAgents({ ...request, pageToken }, options);
    return { items: page.agents, nextPageToken: page.nextPageToken };
  });
}

/** Every logical unit ListDevices lists for `request`, page by page. */
export function listAllDevices<O>(
  client: Pick<InventoryLister<O>, 'listDevices'>,
  request: Partial<ListDevicesRequest> = {},
  options?: O,
): Promise<LogicalUnit[]> {
  return followPages(async (pageToken) => {
    const page = await client.listDevices({ ...request, pageToken }, options);
    return { items: page.logicalUnits, nextPageToken: page.nextPageToken };
  });
}

/** What a FleetService client offers for the two paged fleet listings (any call options). */
interface FleetLister<O> {
  listKeys(request: Partial<ListKeysRequest>, options?: O): Promise<ListKeysResponse>;
  listLoaders(request: Partial<ListLoadersRequest>, options?: O): Promise<ListLoadersResponse>;
}

/** Every key ListKeys lists for `request`, page by page. */
export function listAllKeys<O>(
  client: Pick<FleetLister<O>, 'listKeys'>,
  request: Partial<ListKeysRequest> = {},
  options?: O,
): Promise<KeyRecord[]> {
  return followPages(async (pageToken) => {
    const page = await client.listKeys({ ...request, pageToken }, options);
    return { items: page.keys, nextPageToken: page.nextPageToken };
  });
}

/** Every loader ListLoaders lists for `request`, page by page (each page reads its own changers). */
export function listAllLoaders<O>(
  client: Pick<FleetLister<O>, 'listLoaders'>,
  request: Partial<ListLoadersRequest> = {},
  options?: O,
): Promise<Loader[]> {
  return followPages(async (pageToken) => {
    const page = await client.listLoaders({ ...request, pageToken }, options);
    return { items: page.loaders, nextPageToken: page.nextPageToken };
  });
}
