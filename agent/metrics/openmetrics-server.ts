// `tandem start --metrics HOST:PORT`: the dataplane counters (tandem-fast-path-counters) and the
// sync counters (tandem-ha-fp-conntrack state) in OpenMetrics text on GET /metrics, made with
// prom-client. Each scrape reads the same state providers as a NETCONF <get> (live counters, no
// table dump) and builds a fresh registry from them, so a scrape shows exactly what <get> would.
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry, type OpenMetricsContentType } from 'prom-client';
import type { ConfigJson, StateProvider } from '../../core/subsystem.js';
import { logger } from '../../core/log.js';

const log = logger('metrics');

type Json = Record<string, unknown>;
type Labels = Record<string, string>;
/** Every label a series may carry; each series sets only its own (a VRF total has no worker). */
const LABEL_NAMES = ['vrf', 'worker', 'protocol', 'state', 'rule', 'peer', 'client'];

/** Counters of the fast-path-counters grouping: leaf name -> metric name and help. */
const FASTPATH_COUNTERS: [string, string, string][] = [
  ['created', 'tandem_fastpath_conntracks_created', 'Conntracks created by packets.'],
  ['destroyed', 'tandem_fastpath_conntracks_destroyed', 'Conntracks destroyed.'],
  ['dropped-backup', 'tandem_fastpath_dropped_backup', 'Packets dropped on a backup because they matched a synchronised conntrack.'],
  ['dropped-table-full', 'tandem_fastpath_dropped_table_full', 'New conntracks refused because the table was full.'],
  ['dropped-firewall', 'tandem_fastpath_dropped_firewall', 'New connections dropped by the firewall.'],
  ['dropped-invalid', 'tandem_fastpath_dropped_invalid', 'Packets found invalid by connection tracking.'],
  ['syn-cookies', 'tandem_fastpath_syn_cookies', 'SYNs answered by SYN protection.'],
  ['nat-allocation-failures', 'tandem_fastpath_nat_allocation_failures', 'New connections dropped because no CG-NAT port block was free.'],
  ['conntrack-events-lost', 'tandem_fastpath_conntrack_events_lost', 'Conntrack events the engine could not deliver to sync.'],
  ['conntrack-event-reader-restarts', 'tandem_fastpath_conntrack_event_reader_restarts', 'Times the conntrack event reader failed and was started again (a loss, repaired by a resync).'],
];
const FASTPATH_GAUGES: [string, string, string][] = [
  ['conntracks', 'tandem_fastpath_conntracks', 'Conntracks in the table.'],
  ['synced', 'tandem_fastpath_synced_conntracks', 'Conntracks in the table written by sync.'],
  ['nat-port-blocks-in-use', 'tandem_fastpath_nat_port_blocks_in_use', 'CG-NAT port blocks held by subscribers.'],
];

function list(v: unknown): Json[] {
  return Array.isArray(v) ? v.filter((e): e is Json => typeof e === 'object' && e !== null) : [];
}

function obj(v: unknown): Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Json : {};
}

function num(v: unknown): number | undefined {
  const n = typeof v === 'string' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}

/** Builds the registry of one scrape from the merged state JSON. */
export class MetricsBuilder {
  readonly registry = new Registry<OpenMetricsContentType>();
  private readonly counters = new Map<string, Counter>();
  private readonly gauges = new Map<string, Gauge>();

  constructor() {
    this.registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  }

  counter(name: string, help: string, labels: Labels, value: number | undefined): void {
    if (value === undefined) return;
    let c = this.counters.get(name);
    if (!c) this.counters.set(name, (c = new Counter({ name, help, labelNames: LABEL_NAMES, registers: [this.registry] })));
    c.inc(labels, value);
  }

  gauge(name: string, help: string, labels: Labels, value: number | undefined): void {
    if (value === undefined) return;
    let g = this.gauges.get(name);
    if (!g) this.gauges.set(name, (g = new Gauge({ name, help, labelNames: LABEL_NAMES, registers: [this.registry] })));
    g.set(labels, value);
  }

  /** One counters grouping (a VRF's total or one worker). */
  fastpath(c: Json, labels: Labels): void {
    for (const [leaf, name, help] of FASTPATH_COUNTERS) this.counter(name, help, labels, num(c[leaf]));
    for (const [leaf, name, help] of FASTPATH_GAUGES) this.gauge(name, help, labels, num(c[leaf]));
    for (const s of list(c['conntracks-by-state'])) {
      this.gauge('tandem_fastpath_conntracks_by_state', 'Conntracks by protocol and state.', { ...labels, protocol: String(s.protocol), state: String(s.state) }, num(s.count));
    }
    const fw = obj(c.firewall);
    for (const r of list(fw.rule)) {
      this.counter('tandem_firewall_rule_accepted', 'New connections a firewall rule accepted.', { ...labels, rule: String(r.name) }, num(r.accepted));
      this.counter('tandem_firewall_rule_dropped', 'New connections a firewall rule dropped.', { ...labels, rule: String(r.name) }, num(r.dropped));
    }
    const d = obj(fw['default-action']);
    this.counter('tandem_firewall_default_accepted', 'New connections the firewall default action accepted.', labels, num(d.accepted));
    this.counter('tandem_firewall_default_dropped', 'New connections the firewall default action dropped.', labels, num(d.dropped));
  }

  sync(ha: Json, vrf: string): void {
    for (const p of list(ha.peer)) {
      for (const c of list(p.client)) {
        const labels = { vrf, peer: String(p.name), client: String(c.name) };
        const st = obj(c.statistics);
        this.counter('tandem_sync_transmit', 'Sync messages sent on a peer connection.', labels, num(st.transmit));
        this.counter('tandem_sync_transmit_error', 'Sync messages that could not be sent.', labels, num(st['transmit-error']));
        this.counter('tandem_sync_build_error', 'Sync messages that could not be built.', labels, num(st['build-error']));
        this.gauge('tandem_sync_connection_up', '1 when the sync connection is established.', labels, c['connection-status'] === undefined ? undefined : c['connection-status'] === 'established' ? 1 : 0);
      }
    }
    const local = obj(obj(ha['local-node']).statistics);
    this.counter('tandem_sync_receive', 'Sync messages received from the peers.', { vrf }, num(local.receive));
    this.counter('tandem_sync_receive_error', 'Sync messages received that could not be applied.', { vrf }, num(local['receive-error']));
    const ct = obj(ha.conntracks);
    this.gauge('tandem_sync_conntracks_synced', 'Conntracks currently synchronised to the peers.', { vrf }, num(ct.synced));
    this.gauge('tandem_sync_conntracks_pending', 'Conntracks waiting to be synchronised.', { vrf }, num(ct.pending));
    const resync = obj(ha['last-full-resync']);
    this.gauge('tandem_sync_last_full_resync_conntracks', 'Conntracks in the last complete resynchronisation.', { vrf }, num(resync.count));
    this.gauge('tandem_sync_last_full_resync_duration_ms', 'Duration of the last complete resynchronisation.', { vrf }, num(resync.duration));
  }

  /** Everything of the merged operational state that is a counter of this endpoint. */
  fromState(state: ConfigJson): void {
    for (const v of list(state['tandem-vrf:vrf'])) {
      const vrf = String(v.name);
      const fc = obj(v['tandem-fast-path-counters:fast-path-counters']);
      if (Object.keys(fc).length) {
        this.fastpath(obj(fc.total), { vrf });
        for (const w of list(fc.worker)) this.fastpath(w, { vrf, worker: String(w.index) });
      }
      const ha = obj(v['tandem-ha-fp-conntrack:ha-fp-conntrack']);
      if (Object.keys(ha).length) this.sync(ha, vrf);
    }
  }
}

/** Merges providers' JSON one level deep by list key `name` (the VRF list), as <get> merges it. */
function mergeVrfs(parts: ConfigJson[]): ConfigJson {
  const vrfs = new Map<string, Json>();
  for (const p of parts) {
    for (const v of list(p['tandem-vrf:vrf'])) {
      const name = String(v.name);
      vrfs.set(name, { ...(vrfs.get(name) ?? {}), ...v });
    }
  }
  return { 'tandem-vrf:vrf': [...vrfs.values()] };
}

export class OpenMetricsServer {
  private server: Server | undefined;

  constructor(private readonly providers: StateProvider[]) {}

  /** The OpenMetrics text of one scrape. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    const parts: ConfigJson[] = [];
    for (const p of this.providers) {
      try {
        parts.push(await p.state());
      } catch (err) {
        log.warn({ provider: p.name, err: (err as Error).message }, 'state provider failed during a scrape');
      }
    }
    const b = new MetricsBuilder();
    b.fromState(mergeVrfs(parts));
    return { contentType: b.registry.contentType, body: await b.registry.metrics() };
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('tandem: only GET /metrics here\n');
        return;
      }
      this.scrape().then(({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType }).end(body);
      }, (err: Error) => {
        log.error({ err: err.message }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`tandem: scrape failed: ${err.message}\n`);
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => { server.off('error', reject); resolve(); });
    });
    const a = server.address() as { address: string; port: number };
    log.info({ host: a.address, port: a.port }, 'OpenMetrics endpoint listening (GET /metrics)');
    return { host: a.address, port: a.port };
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
