/**
 * The fleet page's script (built by `make build` with esbuild into dist/web/app.js; no framework). It reads the
 * view from the Server-Sent Events stream (/api/v1/fleet/events: a snapshot, then changes) and renders it with
 * DOM nodes and textContent only: every name comes from agents and is shown as text, never parsed as markup.
 */
import type {
  AgentView,
  FindingView,
  FleetView,
  HistoryView,
  LoaderView,
  LuView,
} from '../src/server/web/view-types.js';

type Child = Node | string;

/** An element with text or child nodes; strings become text nodes (never HTML). */
function el(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

let view: FleetView | undefined;

/** A fleet event as the stream forwards it (the event log's JSON; only what the page shows). */
interface FleetEventJson {
  readonly cursor: string;
  readonly time?: string;
  readonly kind: string;
  readonly summary?: string;
}
/** The newest fleet events, newest first (the page's live event list). */
let fleetEvents: FleetEventJson[] = [];
const MAX_EVENTS = 30;

function severityBadge(severity: FindingView['severity']): HTMLElement {
  return el('span', { class: `sev sev-${severity}` }, severity.toUpperCase());
}

function findingList(findings: readonly FindingView[]): Child {
  if (findings.length === 0) return el('span', { class: 'muted' }, 'none');
  return el(
    'ul',
    { class: 'findings' },
    ...findings.map((f) =>
      el(
        'li',
        { 'data-severity': f.severity },
        severityBadge(f.severity),
        ' ',
        f.message,
        ...(f.suggestedAction === ''
          ? []
          : [el('div', { class: 'action' }, '→ ', f.suggestedAction)]),
      ),
    ),
  );
}

function holderText(lu: LuView): Child {
  if (lu.status === 'unreadable') return el('span', { class: 'muted' }, 'unknown (not read)');
  if (!lu.reserved) return el('span', { class: 'muted' }, 'none');
  if (lu.holder === null) return `every registrant (${lu.type})`;
  const who = lu.holder.agentId === '' ? 'unknown host' : lu.holder.agentId;
  return el(
    'span',
    {},
    el('strong', {}, who),
    lu.holder.path === '' ? '' : `:${lu.holder.path}`,
    ` key ${lu.holder.key}`,
    lu.holder.agentId !== '' && !lu.holder.online
      ? el('span', { class: 'sev sev-critical' }, ' OFFLINE')
      : '',
  );
}

function registrations(lu: LuView): Child {
  if (lu.registrations.length === 0) return el('span', { class: 'muted' }, 'no paths');
  return el(
    'ul',
    { class: 'regs' },
    ...lu.registrations.map((r) =>
      el(
        'li',
        {},
        el('strong', {}, r.agentId),
        `:${r.path} — ${r.registration}`,
        r.key === '' ? '' : ` ${r.key}`,
        r.holder ? el('span', { class: 'tag' }, ' holder') : '',
        r.online ? '' : el('span', { class: 'sev sev-warning' }, ' offline'),
      ),
    ),
  );
}

function row(heading: string, value: Child, field: string): HTMLElement {
  return el(
    'tr',
    {},
    el('th', { scope: 'row' }, heading),
    el('td', { 'data-field': field }, value),
  );
}

function luCard(lu: LuView, label: string): HTMLElement {
  const identity = [lu.vendor, lu.product, lu.serial].filter((s) => s !== '').join(' ');
  return el(
    'table',
    { class: `lu lu-${lu.role}`, 'data-lu-id': lu.luId },
    el('caption', {}, el('span', { class: 'role' }, label), ' ', lu.luId),
    el(
      'tbody',
      {},
      row('device', identity === '' ? '—' : identity, 'device'),
      row('holder', holderText(lu), 'holder'),
      row('type', lu.reserved ? `${lu.type} (${lu.typeName})` : '—', 'type'),
      row('PRgeneration', lu.generation === null ? '—' : String(lu.generation), 'generation'),
      row('registrations', registrations(lu), 'registrations'),
      row('findings', findingList(lu.findings), 'findings'),
      ...(lu.error === '' ? [] : [row('error', lu.error, 'error')]),
      row('read at', new Date(lu.readAt).toLocaleTimeString(), 'read-at'),
    ),
  );
}

function loaderSection(loader: LoaderView): HTMLElement {
  const title = loader.loaderId === '' ? 'LUs outside any loader' : `Loader ${loader.loaderId}`;
  return el(
    'section',
    { class: 'loader', 'data-loader-id': loader.loaderId },
    el('h3', {}, title),
    ...(loader.sites.length > 1
      ? [el('p', { class: 'muted' }, `seen from sites ${loader.sites.join(', ')}`)]
      : []),
    ...(loader.findings.length === 0 ? [] : [findingList(loader.findings)]),
    el(
      'div',
      { class: 'lus' },
      ...loader.changers.map((lu) => luCard(lu, 'changer')),
      ...loader.drives.map((lu, i) =>
        luCard(lu, loader.drives.length > 1 ? `drive ${i}` : 'drive'),
      ),
    ),
  );
}

function table(caption: string, headings: string[], rows: Child[][], cls: string): HTMLElement {
  return el(
    'div',
    { class: 'scroll' },
    el(
      'table',
      { class: cls },
      el('caption', {}, caption),
      el('thead', {}, el('tr', {}, ...headings.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, ...rows.map((cells) => el('tr', {}, ...cells.map((c) => el('td', {}, c))))),
    ),
  );
}

function agentsTable(agents: readonly AgentView[]): HTMLElement {
  return table(
    'Agents',
    ['host', 'hostname', 'site', 'status', 'last seen', 'paths'],
    agents.map((a) => [
      a.agentId,
      a.hostname,
      a.site,
      a.connected
        ? el('span', { class: 'ok' }, 'connected')
        : el('span', { class: 'sev sev-critical' }, 'OFFLINE'),
      a.lastSeen === '' ? '—' : new Date(a.lastSeen).toLocaleTimeString(),
      String(a.paths),
    ]),
    'agents',
  );
}

function historyTable(history: readonly HistoryView[]): HTMLElement {
  return table(
    'Recent PROUTs (newest first)',
    ['time', 'who', 'action', 'nexus', 'LU', 'type', 'keys', 'outcome', 'reason'],
    history.map((h) => [
      new Date(h.time).toLocaleTimeString(),
      h.actor,
      h.action,
      `${h.agentId}:${h.path}`,
      h.luId,
      h.type === '' ? '—' : h.type,
      `${h.key} → ${h.serviceActionKey}`,
      el('span', { class: h.outcome === 'GOOD' ? 'ok' : 'sev sev-warning' }, h.outcome),
      h.reason,
    ]),
    'history',
  );
}

function eventsTable(events: readonly FleetEventJson[]): HTMLElement {
  return table(
    'Fleet events (live, newest first)',
    ['time', 'what', 'summary'],
    events.map((e) => [
      e.time === undefined ? '—' : new Date(e.time).toLocaleTimeString(),
      e.kind
        .replace(/^EVENT_KIND_/, '')
        .replaceAll('_', ' ')
        .toLowerCase(),
      e.summary ?? '',
    ]),
    'events',
  );
}

function summary(v: FleetView): HTMLElement {
  const all = v.sites.flatMap((s) =>
    s.loaders.flatMap((l) => [
      ...l.findings,
      ...[...l.changers, ...l.drives].flatMap((lu) => lu.findings),
    ]),
  );
  const count = (sev: FindingView['severity']) => all.filter((f) => f.severity === sev).length;
  const online = v.agents.filter((a) => a.connected).length;
  return el(
    'p',
    { class: 'summary' },
    `${online} of ${v.agents.length} agents connected · findings: `,
    severityBadge('critical'),
    ` ${count('critical')} `,
    severityBadge('warning'),
    ` ${count('warning')} `,
    severityBadge('info'),
    ` ${count('info')}`,
  );
}

function render(): void {
  const main = document.getElementById('fleet');
  if (main === null || view === undefined) return;
  const v = view;
  main.replaceChildren(
    summary(v),
    ...v.notes.map((n) => el('p', { class: 'note' }, n)),
    ...v.sites.map((s) =>
      el(
        'section',
        { class: 'site', 'data-site': s.site },
        el('h2', {}, `Site ${s.site === '' ? '(none)' : s.site}`),
        ...s.loaders.map(loaderSection),
      ),
    ),
    agentsTable(v.agents),
    historyTable(v.history),
    eventsTable(fleetEvents),
  );
}

let renderQueued = false;
function queueRender(): void {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

/** Replaces one LU (and its loader's findings) in the view. */
function applyLu(lu: LuView, loader: { loaderId: string; findings: FindingView[] }): void {
  if (view === undefined) return;
  const sites = view.sites.map((s) => ({
    ...s,
    loaders: s.loaders.map((l) =>
      l.loaderId !== loader.loaderId
        ? l
        : {
            ...l,
            findings: loader.findings,
            changers: l.changers.map((x) => (x.luId === lu.luId ? lu : x)),
            drives: l.drives.map((x) => (x.luId === lu.luId ? lu : x)),
          },
    ),
  }));
  view = { ...view, sites };
}

function setStatus(text: string, cls: string): void {
  const status = document.getElementById('status');
  if (status === null) return;
  status.textContent = text;
  status.className = cls;
}

function connect(): void {
  const events = new EventSource('/api/v1/fleet/events');
  const parse = (e: Event): unknown => JSON.parse((e as MessageEvent<string>).data);
  events.addEventListener('snapshot', (e) => {
    view = parse(e) as FleetView;
    setStatus(`live · updated ${new Date().toLocaleTimeString()}`, 'live');
    queueRender();
  });
  events.addEventListener('lu', (e) => {
    const { lu, loader } = parse(e) as {
      lu: LuView;
      loader: { loaderId: string; findings: FindingView[] };
    };
    applyLu(lu, loader);
    setStatus(`live · updated ${new Date().toLocaleTimeString()}`, 'live');
    queueRender();
  });
  events.addEventListener('agents', (e) => {
    if (view !== undefined) view = { ...view, agents: parse(e) as AgentView[] };
    queueRender();
  });
  events.addEventListener('history', (e) => {
    const entry = parse(e) as HistoryView;
    if (view !== undefined && !view.history.some((h) => h.seq === entry.seq)) {
      view = { ...view, history: [entry, ...view.history].slice(0, 20) };
    }
    queueRender();
  });
  events.addEventListener('fleet', (e) => {
    fleetEvents = [parse(e) as FleetEventJson, ...fleetEvents].slice(0, MAX_EVENTS);
    queueRender();
  });
  events.addEventListener('reset', () => {
    fleetEvents = [];
    queueRender();
  });
  events.addEventListener('logout', () => {
    events.close();
    window.location.assign('/login');
  });
  events.addEventListener('error', () => {
    // EventSource reconnects by itself; a stream refused as unauthenticated does not: send the user to log in.
    if (events.readyState === EventSource.CLOSED) {
      setStatus('disconnected: reload the page (or log in again)', 'down');
    } else {
      setStatus('reconnecting…', 'down');
    }
  });
}

connect();
