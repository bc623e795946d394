/** The fleet event log (docs/events.md): append, read by cursor, subscribe. */
export * from './types.js';
export { createMemoryEventLog } from './memory-log.js';
export { createStoreEventLog, appendIn, eventOfRow } from './store-log.js';
export { SubscriptionHub, type EventSource } from './hub.js';
