/**
 * The JSON of the web fleet view (GET /api/v1/fleet and the SSE events; docs/http.md). Types only, imported by
 * the server (model.ts builds them) and by the page's script (web/app.ts), which has no Node types.
 */

/** How bad a finding is, in words (the page shows it as text and colour). */
export type SeverityWord = 'critical' | 'warning' | 'info';

/** One open finding. */
export interface FindingView {
  readonly severity: SeverityWord;
  /** The audit's kind in lower case, e.g. `loader_deadlock`. */
  readonly kind: string;
  readonly message: string;
  readonly suggestedAction: string;
  readonly luId: string;
  readonly agentId: string;
}

/** One path (I_T nexus) of an LU and its registration. */
export interface RegistrationView {
  readonly agentId: string;
  readonly hostname: string;
  readonly path: string;
  /** `registered`, `not registered` or `unknown` (a host with some of its keys counted, or the LU unread). */
  readonly registration: 'registered' | 'not registered' | 'unknown';
  /** The key on this nexus when known, else ''. */
  readonly key: string;
  /** This nexus (or, without READ FULL STATUS, its host's key) holds the reservation. */
  readonly holder: boolean;
  /** The agent is connected and last saw the node work. */
  readonly online: boolean;
}

/** Who holds an LU. */
export interface HolderView {
  /** The host (agent id), '' when no known agent has the key. */
  readonly agentId: string;
  readonly hostname: string;
  /** The holding path, when the device tells (READ FULL STATUS). */
  readonly path: string;
  readonly key: string;
  readonly online: boolean;
}

/** One logical unit as the view shows it. */
export interface LuView {
  readonly luId: string;
  readonly loaderId: string;
  readonly role: 'changer' | 'drive';
  readonly vendor: string;
  readonly product: string;
  readonly serial: string;
  /** `read` (state below is the device's), `unreadable` (no path answered: see error). */
  readonly status: 'read' | 'unreadable';
  readonly error: string;
  /** When the state was read. */
  readonly readAt: string;
  readonly generation: number | null;
  readonly reserved: boolean;
  /** Short type (WE, EA, WE-RO …), '' when unreserved. */
  readonly type: string;
  /** sg_persist's words for the type, '' when unreserved. */
  readonly typeName: string;
  /** Null when unreserved or for the all-registrants types (every registrant holds it). */
  readonly holder: HolderView | null;
  readonly registrations: readonly RegistrationView[];
  readonly findings: readonly FindingView[];
}

/** A loader: its changer(s) and drives side by side, with the loader-level findings (deadlocks). */
export interface LoaderView {
  /** '' for LUs no agent puts in a loader. */
  readonly loaderId: string;
  /** Every site whose agents see it (the loader is listed under the one most of its paths are at). */
  readonly sites: readonly string[];
  readonly changers: readonly LuView[];
  readonly drives: readonly LuView[];
  readonly findings: readonly FindingView[];
}

/** A site (as agents report it) and the loaders its agents see. */
export interface SiteView {
  readonly site: string;
  readonly loaders: readonly LoaderView[];
}

/** One agent (host). */
export interface AgentView {
  readonly agentId: string;
  readonly hostname: string;
  readonly site: string;
  readonly connected: boolean;
  /** Last heartbeat (or connection) time, '' when never. */
  readonly lastSeen: string;
  readonly paths: number;
  readonly version: string;
}

/** One PROUT of the history. */
export interface HistoryView {
  readonly seq: number;
  readonly time: string;
  readonly actor: string;
  readonly agentId: string;
  readonly path: string;
  readonly luId: string;
  /** e.g. `PREEMPT`. */
  readonly action: string;
  readonly type: string;
  readonly key: string;
  readonly serviceActionKey: string;
  /** e.g. `GOOD`, `RESERVATION CONFLICT`, `UNKNOWN`. */
  readonly outcome: string;
  readonly reason: string;
}

/** The whole view (GET /api/v1/fleet; the SSE stream's `snapshot` event). */
export interface FleetView {
  readonly version: 1;
  readonly generatedAt: string;
  readonly sites: readonly SiteView[];
  readonly agents: readonly AgentView[];
  /** Newest first. */
  readonly history: readonly HistoryView[];
  /** Why something is missing (no durable store: no history, no key registry). */
  readonly notes: readonly string[];
}
