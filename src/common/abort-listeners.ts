/**
 * Abort listeners that cost O(1) to add and remove, however many wait on one signal.
 *
 * Node's EventTarget walks its whole listener list on every addEventListener (duplicate check) and
 * removeEventListener, so an audit's thousands of queued and in-flight commands on one call signal cost O(n²):
 * at 10,000 commands that is a quarter of the server's CPU. Here each signal gets ONE real listener, and the
 * callers' listeners live in a Set behind it.
 */

/**
 * The callers' listeners of a signal, kept on the signal itself under a symbol. Not a WeakMap: every command has
 * signals of its own, and a WeakMap entry per signal cost ~5 µs a command (its insert, and the GC's ephemeron
 * work for entries whose signals are garbage) against ~0.1 µs for a property.
 */
const LISTENERS = Symbol('prfleet.abortListeners');

type ListenedSignal = AbortSignal & { [LISTENERS]?: Set<() => void> | undefined };

const noop = () => {};

/**
 * Calls `listener` once when `signal` aborts (never when it has aborted already, like addEventListener); returns
 * a function that unregisters it. Listeners run in registration order; one that throws does not stop the others
 * (its error is rethrown asynchronously, as EventTarget reports it).
 */
export function onAbort(signal: AbortSignal, listener: () => void): () => void {
  if (signal.aborted) return noop;
  const listened = signal as ListenedSignal;
  let listeners = listened[LISTENERS];
  if (listeners === undefined) {
    const created = new Set<() => void>();
    listeners = created;
    listened[LISTENERS] = created;
    signal.addEventListener(
      'abort',
      () => {
        listened[LISTENERS] = undefined;
        for (const l of [...created]) {
          try {
            l();
          } catch (e) {
            queueMicrotask(() => {
              throw e;
            });
          }
        }
        created.clear();
      },
      { once: true },
    );
  }
  // A wrapper per registration: the same function registered twice runs twice and unregisters separately.
  const entry = () => listener();
  listeners.add(entry);
  const registered = listeners;
  return () => {
    registered.delete(entry);
  };
}
