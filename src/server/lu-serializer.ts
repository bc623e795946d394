/**
 * Gives each logical unit one turn at a time: work queued for an LU runs after every earlier work for it has
 * settled, in arrival order. The command executor and the fleet engine run each PROUT with its precondition read
 * in one turn, so no other PROUT through this server lands between the read and the PROUT it guards (SPC-4 has
 * no compare-and-swap on PRgeneration; other servers and foreign initiators remain, see docs/cli.md).
 */
export interface LuSerializer {
  /** Runs `work` in `luId`'s next turn; resolves or rejects with it. */
  run<T>(luId: string, work: () => Promise<T>): Promise<T>;
}

/** Creates an {@link LuSerializer}; it keeps nothing for an LU with no work queued. */
export function createLuSerializer(): LuSerializer {
  const tails = new Map<string, Promise<void>>();
  return {
    async run(luId, work) {
      const previous = tails.get(luId) ?? Promise.resolve();
      const running = previous.then(work);
      const tail = running.then(
        () => undefined,
        () => undefined,
      );
      tails.set(luId, tail);
      try {
        return await running;
      } finally {
        if (tails.get(luId) === tail) tails.delete(luId);
      }
    },
  };
}
