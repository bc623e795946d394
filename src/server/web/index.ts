/** The read-only web fleet view (docs/http.md): an HTTP/1.1 handler for the server's one port. */
export { createWebView, findWebAssets, type WebView, type WebViewDeps } from './view.js';
export { createFleetState, type FleetState, type FleetUpdate } from './fleet-state.js';
export type {
  FleetView,
  LuView,
  LoaderView,
  SiteView,
  AgentView,
  HistoryView,
  FindingView,
} from './model.js';
export { registerWebView, type WebRouteTable } from './routes.js';
