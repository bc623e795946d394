import type { HttpRoute } from './routes.js';

/** The routes of one server by exact path and by prefix. */
export interface RouteTable {
  /** Adds a route; throws when one with the same method and path (or prefix) exists. Returns its removal. */
  register(route: HttpRoute): () => void;
  /**
   * The routes of `path` (an exact path first, else the longest matching prefix) and the path after the
   * prefix; undefined when no route matches.
   */
  find(path: string): { readonly routes: HttpRoute[]; readonly rest: string } | undefined;
}

/** The methods a route serves. */
export function methodsOf(route: HttpRoute): string[] {
  return typeof route.method === 'string' ? [route.method] : [...route.method];
}

/** An empty {@link RouteTable}. */
export function createRouteTable(): RouteTable {
  const exact = new Map<string, HttpRoute[]>();
  const prefixes: HttpRoute[] = [];
  return {
    register(route) {
      if ((route.path === undefined) === (route.prefix === undefined))
        throw new Error('an HTTP route needs exactly one of path or prefix');
      const key = route.path ?? route.prefix ?? '';
      const existing =
        route.path !== undefined
          ? (exact.get(key) ?? [])
          : prefixes.filter((r) => r.prefix === key);
      const clash = existing.find((r) => methodsOf(r).some((m) => methodsOf(route).includes(m)));
      if (clash !== undefined)
        throw new Error(`HTTP route ${methodsOf(route).join('|')} ${key} is registered already`);
      if (route.path !== undefined) exact.set(key, [...existing, route]);
      else prefixes.push(route);
      return () => {
        if (route.path !== undefined)
          exact.set(
            key,
            (exact.get(key) ?? []).filter((r) => r !== route),
          );
        else prefixes.splice(prefixes.indexOf(route) >>> 0, prefixes.includes(route) ? 1 : 0);
      };
    },
    find(path) {
      const direct = exact.get(path);
      if (direct !== undefined && direct.length > 0) return { routes: direct, rest: '' };
      let best: HttpRoute | undefined;
      for (const route of prefixes) {
        const prefix = route.prefix as string;
        if (
          path.startsWith(prefix) &&
          (best === undefined || prefix.length > (best.prefix as string).length)
        )
          best = route;
      }
      if (best === undefined) return undefined;
      const prefix = best.prefix as string;
      return {
        routes: prefixes.filter((r) => r.prefix === prefix),
        rest: path.slice(prefix.length),
      };
    },
  };
}
