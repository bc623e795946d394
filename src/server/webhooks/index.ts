/** Webhooks (docs/events.md, Webhooks): subscriptions in the store, signed deliveries with retries. */
import type { Logger } from 'pino';
import type { AgentRegistry } from '../agents/index.js';
import { registryContext } from '../events/context.js';
import type { EventLog } from '../events/types.js';
import type { Store } from '../store/index.js';
import { WebhookDispatcher, type WebhookObserver, type WebhookSettings } from './dispatcher.js';
import { createWebhookRpcs, type WebhookRpcs } from './service.js';
import { createWebhookStore } from './store.js';

export {
  WebhookDispatcher,
  WEBHOOK_DEFAULTS,
  retryDelayMs,
  type WebhookObserver,
  type WebhookSettings,
} from './dispatcher.js';
export { createWebhookRpcs, webhookToProto, type WebhookRpcs } from './service.js';
export { createWebhookStore, secretFingerprint, type WebhookStore } from './store.js';
export { signWebhook, verifyWebhook, WEBHOOK_HEADERS } from './sign.js';
export { checkWebhookUrl, checkWebhookSecret, WebhookInputError } from './url.js';

/** A server's webhooks: the RPCs and the delivery of this instance. */
export interface Webhooks {
  readonly rpcs: WebhookRpcs;
  /** Starts delivering (after listen). */
  start(): void;
  /** Stops delivering and releases this instance's leases (before the store closes). */
  close(): Promise<void>;
}

/** Webhooks over the durable store and the event log. */
export function createWebhooks(deps: {
  readonly store: Store;
  readonly events: EventLog;
  readonly registry: AgentRegistry;
  readonly settings: WebhookSettings;
  readonly instanceId: string;
  readonly log: Logger;
  readonly observer?: WebhookObserver | undefined;
}): Webhooks {
  const store = createWebhookStore(deps.store.db);
  const dispatcher = new WebhookDispatcher({
    store,
    events: deps.events,
    context: registryContext(deps.registry),
    owner: deps.instanceId,
    settings: deps.settings,
    log: deps.log,
    observer: deps.observer,
  });
  let started = false;
  let closed: Promise<void> | undefined;
  return {
    rpcs: createWebhookRpcs({
      store,
      events: deps.events,
      allowHttp: deps.settings.allowHttp,
      changed: () => {
        if (started) dispatcher.scan();
      },
    }),
    start() {
      started = true;
      dispatcher.start();
    },
    close() {
      closed ??= dispatcher.close();
      return closed;
    },
  };
}
