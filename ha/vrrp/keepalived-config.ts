// keepalived.conf from the VRRP configuration of a VRF (/tandem-vrf:vrf[name]/vrrp and
// interface/vrrp). One keepalived runs per VRF, inside the VRF's network namespace, so a file holds
// the instances of one VRF. Pure functions: the YANG defaults arrive in the JSON (printed with
// defaults), none is repeated here.
import { isIP } from 'node:net';
import { masterRouteLines, masterRuleLines } from '../../fastpath/linux/kernel-role-rules.js';

type Json = Record<string, unknown>;

export interface VrrpInstanceConfig {
  name: string;
  linkInterface: string;
  vrid: number;
  priority: number;
  virtualAddresses: string[];
  /** Advertisement interval in centiseconds (RFC 5798 unit). */
  advertIntervalCs: number;
  preempt: boolean;
  /** The HA group this instance controls, if any. */
  haGroup?: string;
  /**
   * The VRF's own dataplane follows `haGroup` (its ha-fp-conntrack listen-ha-group): keepalived
   * then adds the master rule that lifts the VRF's backup guard in the kernel
   * (fastpath/linux/kernel-role-rules.ts), in the namespace it runs in, which is the VRF's.
   */
  liftsGuard?: boolean;
}

export interface VrfVrrpConfig {
  vrf: string;
  enabled: boolean;
  routerId?: string;
  instances: VrrpInstanceConfig[];
}

export interface KeepalivedPaths {
  /** FIFO keepalived writes its INSTANCE state lines to. */
  notifyFifo: string;
}

export function vrfPath(vrf: string): string {
  return `/tandem-vrf:vrf[name='${vrf}']`;
}

export function instancePath(vrf: string, instance: string): string {
  return `${vrfPath(vrf)}/interface/vrrp[name='${instance}']`;
}

/** An error in the VRRP configuration, with the data path of the node at fault. */
export class VrrpConfigError extends Error {
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(message);
    this.name = 'VrrpConfigError';
  }
}

// Names reach keepalived.conf unquoted; the YANG patterns already exclude spaces and quotes, this
// guards against JSON that did not come through libyang.
const SAFE_WORD = /^[A-Za-z0-9_][A-Za-z0-9_.:@-]*$/;
const SAFE_PATH = /^\/[A-Za-z0-9_./+-]+$/;

function word(value: unknown, what: string, path: string): string {
  if (typeof value !== 'string' || !SAFE_WORD.test(value)) throw new VrrpConfigError(`${what}: bad value ${JSON.stringify(value)}`, path);
  return value;
}

function int(value: unknown, what: string, path: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new VrrpConfigError(`${what} must be an integer in ${min}..${max}, got ${JSON.stringify(value)}`, path);
  }
  return value;
}

function bool(value: unknown, what: string, path: string): boolean {
  if (typeof value !== 'boolean') throw new VrrpConfigError(`${what} must be true or false, got ${JSON.stringify(value)}`, path);
  return value;
}

function readInstance(vrf: string, j: Json): VrrpInstanceConfig {
  const name = word(j['name'], 'VRRP instance name', `${vrfPath(vrf)}/interface/vrrp`);
  const path = instancePath(vrf, name);
  const addresses = j['virtual-address'];
  if (!Array.isArray(addresses) || addresses.length === 0) throw new VrrpConfigError(`VRRP instance ${name}: at least one virtual-address is required`, `${path}/virtual-address`);
  for (const a of addresses) {
    if (typeof a !== 'string' || isIP(a) === 0) throw new VrrpConfigError(`VRRP instance ${name}: bad virtual-address ${JSON.stringify(a)}`, `${path}/virtual-address`);
  }
  const inst: VrrpInstanceConfig = {
    name,
    linkInterface: word(j['link-interface'], `VRRP instance ${name}: link-interface`, `${path}/link-interface`),
    vrid: int(j['vrid'], `VRRP instance ${name}: vrid`, `${path}/vrid`, 1, 255),
    priority: int(j['priority'], `VRRP instance ${name}: priority`, `${path}/priority`, 1, 254),
    virtualAddresses: addresses as string[],
    advertIntervalCs: int(j['advert-interval'], `VRRP instance ${name}: advert-interval`, `${path}/advert-interval`, 1, 4095),
    preempt: bool(j['preempt'], `VRRP instance ${name}: preempt`, `${path}/preempt`),
  };
  if (j['ha-group'] !== undefined) inst.haGroup = word(j['ha-group'], `VRRP instance ${name}: ha-group`, `${path}/ha-group`);
  return inst;
}

/**
 * The VRRP part of every VRF of a configuration (RFC 7951 JSON printed with defaults). VRFs with
 * neither instances nor `vrrp enabled` are left out. Throws VrrpConfigError on bad input.
 */
export function readVrrpConfigs(config: Json): VrfVrrpConfig[] {
  const vrfs = Array.isArray(config['tandem-vrf:vrf']) ? (config['tandem-vrf:vrf'] as Json[]) : [];
  const out: VrfVrrpConfig[] = [];
  for (const v of vrfs) {
    const vrf = word(v['name'], 'VRF name', '/tandem-vrf:vrf');
    const vrrp = (v['vrrp'] ?? {}) as Json;
    const iface = (v['interface'] ?? {}) as Json;
    const list = Array.isArray(iface['vrrp']) ? (iface['vrrp'] as Json[]) : [];
    const enabled = vrrp['enabled'] === undefined ? false : bool(vrrp['enabled'], 'vrrp enabled', `${vrfPath(vrf)}/vrrp/enabled`);
    if (!enabled && list.length === 0) continue;
    const cfg: VrfVrrpConfig = { vrf, enabled, instances: list.map((j) => readInstance(vrf, j)) };
    const listened = ((v['tandem-ha-fp-conntrack:ha-fp-conntrack'] ?? {}) as Json)['listen-ha-group'];
    for (const inst of cfg.instances) if (inst.haGroup !== undefined && inst.haGroup === listened) inst.liftsGuard = true;
    if (vrrp['router-id'] !== undefined) {
      const id = vrrp['router-id'];
      if (typeof id !== 'string' || isIP(id) !== 4) throw new VrrpConfigError(`router-id must be an IPv4 address, got ${JSON.stringify(id)}`, `${vrfPath(vrf)}/vrrp/router-id`);
      cfg.routerId = id;
    }
    const seen = new Map<string, string>();
    for (const inst of cfg.instances) {
      const key = `${inst.linkInterface}/${inst.vrid}`;
      const other = seen.get(key);
      if (other !== undefined) {
        throw new VrrpConfigError(`VRRP instances ${other} and ${inst.name} both use vrid ${inst.vrid} on ${inst.linkInterface}`, instancePath(vrf, inst.name));
      }
      seen.set(key, inst.name);
    }
    out.push(cfg);
  }
  return out;
}

/** keepalived's advert_int is in seconds; VRRPv3 allows centisecond steps. */
export function advertIntSeconds(centiseconds: number): string {
  return (centiseconds / 100).toString();
}

function renderInstance(inst: VrrpInstanceConfig): string[] {
  // A VRRPv3 instance carries one address family: the first address decides, addresses of the
  // other family are still added by the master but not advertised (virtual_ipaddress_excluded).
  const family = isIP(inst.virtualAddresses[0] ?? '');
  const advertised = inst.virtualAddresses.filter((a) => isIP(a) === family);
  const excluded = inst.virtualAddresses.filter((a) => isIP(a) !== family);
  const lines = [
    `vrrp_instance ${inst.name} {`,
    // Every node starts as backup: the election (priority, then preempt) decides who is master.
    '  state BACKUP',
    `  interface ${inst.linkInterface}`,
    `  virtual_router_id ${inst.vrid}`,
    `  priority ${inst.priority}`,
    `  advert_int ${advertIntSeconds(inst.advertIntervalCs)}`,
    '  version 3',
  ];
  if (!inst.preempt) lines.push('  nopreempt');
  lines.push('  virtual_ipaddress {', ...advertised.map((a) => `    ${a}`), '  }');
  if (excluded.length > 0) lines.push('  virtual_ipaddress_excluded {', ...excluded.map((a) => `    ${a}`), '  }');
  // keepalived adds these (routes, then rules) after the addresses and before its gratuitous ARP,
  // and removes them (rules, then routes) before it releases the addresses: the backup guard
  // lifts and returns in the same switch.
  // TANDEM_TEST_KERNEL_GUARD=0 (a test/bench hook: the takeover bench's side-by-side runs) leaves
  // them out: the guard then lifts only when the agent removes it, as before.
  if (inst.liftsGuard && process.env.TANDEM_TEST_KERNEL_GUARD !== '0') {
    lines.push('  virtual_routes {', ...masterRouteLines(inst.linkInterface).map((r) => `    ${r}`), '  }');
    lines.push('  virtual_rules {', ...masterRuleLines().map((r) => `    ${r}`), '  }');
  }
  lines.push('}');
  return lines;
}

/**
 * keepalived.conf for one VRF. Advertisements are multicast (224.0.0.18 / ff02::12) on the link
 * interface: the YANG names no unicast peers, and multicast works on veths and bridges.
 */
export function renderKeepalivedConf(cfg: VrfVrrpConfig, paths: KeepalivedPaths): string {
  if (!SAFE_PATH.test(paths.notifyFifo)) throw new Error(`notify FIFO path ${JSON.stringify(paths.notifyFifo)} cannot be written to keepalived.conf`);
  const lines = [
    `# keepalived.conf of VRF ${cfg.vrf}, written by tandem; edits are overwritten at the next commit.`,
    'global_defs {',
    `  router_id ${cfg.routerId ?? `tandem-${cfg.vrf}`}`,
    '  vrrp_version 3',
    `  notify_fifo ${paths.notifyFifo}`,
    // After a reload keepalived restarts its instances in BACKUP: say so, or the agent's view of a
    // group would lag until the next transition.
    '  fifo_write_vrrp_states_on_reload',
    // No vrrp_rt_priority / max_auto_priority here: keepalived-process.ts starts keepalived
    // real-time with chrt instead (keepalived's own real-time mode gets its VRRP process killed
    // after a reload, see there).
    '}',
  ];
  const active = cfg.enabled ? cfg.instances : [];
  for (const inst of active) lines.push('', ...renderInstance(inst));
  return `${lines.join('\n')}\n`;
}
