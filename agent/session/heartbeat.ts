import { durationToMs } from '../../src/common/command.js';
import type { Welcome } from '../../src/gen/prfleet/v1/agent.js';

/** The heartbeat interval a Welcome sets, ms; `fallbackMs` when it sets none (or zero). */
export function heartbeatIntervalMs(welcome: Welcome, fallbackMs: number): number {
  return welcome.heartbeatInterval && durationToMs(welcome.heartbeatInterval) > 0
    ? durationToMs(welcome.heartbeatInterval)
    : fallbackMs;
}

/** Calls `beat` every `intervalMs` until stopped; the timer keeps no process alive. */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly beat: () => void) {}

  /** (Re)starts at `intervalMs` (a second Welcome replaces the first's interval). */
  start(intervalMs: number): void {
    clearInterval(this.timer);
    this.timer = setInterval(this.beat, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
