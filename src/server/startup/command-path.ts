import type { Clock } from '../../common/clock.js';
import { createCommandExecutor, type CommandExecutor } from '../command-executor.js';
import { createHistoryHealer, type HistoryHealer } from '../commands/history-healer.js';
import { createCommandPipeline, type CommandPipeline } from '../commands/pipeline.js';
import { journalWithProutEvents } from '../events/prout-events.js';
import {
  createProutRecorder,
  createWriteTracker,
  type ProutRecorder,
  type WriteTracker,
} from '../history.js';
import { createMemoryJournal, type CommandJournal } from '../journal.js';
import type { ServerDeps } from '../server.js';
import { createStoreCommandJournal, type Store } from '../store/index.js';
import type { Routing } from './routing.js';

/** The one command path and the records it keeps (docs/architecture.md, "The command path"). */
export interface CommandPath {
  /** The idempotency journal (the store's operation journal, or in memory), telling the events of PROUTs. */
  readonly journal: CommandJournal;
  /** Appends PROUT results to the history. */
  readonly recorder: ProutRecorder;
  /** Journal completions in flight, which shutdown waits for before the store closes. */
  readonly writes: WriteTracker;
  /** Appends history entries completions could not write (stopped at shutdown); undefined without a store. */
  readonly healer: HistoryHealer | undefined;
  /** Every command, from every entry point. */
  readonly commands: CommandPipeline;
  /** Requests of ControlService turned into pipeline inputs. */
  readonly executor: CommandExecutor;
}

/** Builds the journal, the history recorder and the command pipeline over the observed router. */
export function buildCommandPath(
  deps: ServerDeps,
  store: Store | undefined,
  routing: Routing,
  clock: Clock,
): CommandPath {
  const { config, log } = deps;
  const journal =
    deps.journal ??
    journalWithProutEvents(
      store === undefined
        ? createMemoryJournal()
        : createStoreCommandJournal(store.journal, { owner: config.instanceId }),
      routing.events.onHistory,
    );
  const recorder = createProutRecorder(store?.history, log);
  const writes = createWriteTracker();
  const healer = store === undefined ? undefined : createHistoryHealer(store, log, clock);
  const commands = createCommandPipeline({
    router: routing.router,
    journal,
    marginMs: config.deadlineMarginMs,
    log,
    luSerializer: routing.luSerializer,
    writes,
    onHistoryGap: healer?.gap,
    clock,
  });
  const executor = createCommandExecutor({
    registry: routing.agents,
    pipeline: commands,
    journal,
    budget: { defaultTimeoutMs: config.commandTimeoutMs, marginMs: config.deadlineMarginMs },
    log,
    clock,
  });
  return { journal, recorder, writes, healer, commands, executor };
}
