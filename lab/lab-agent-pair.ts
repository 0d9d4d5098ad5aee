// The HA pair of the lab run by the REAL agents: `tandem start --engine linux` in ha1's and ha2's
// namespaces, each configured over NETCONF with ncclient (lab-pair-config.ts), ha1 with the higher
// VRRP priority; start() returns once VRRP has elected ha1 (it holds both gateway addresses) and
// both agents report HA group g1 as master on ha1 and backup on ha2. Plus the probes the lab's
// runs share: gateway addresses, conntracks towards the server in a router's kernel table.
import { LabAgent } from './lab-agents.js';
import { HA_GROUP_FILTER, leafText, pairConfigXml, type PairConfigOptions } from './lab-pair-config.js';
import { LAB, type LabTopology, type RouterName } from './lab-topology.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` until it holds; a clear error after `timeoutMs`. */
export async function until(check: () => boolean | Promise<boolean>, what: string | (() => string), timeoutMs: number, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(everyMs);
  }
}

/** Whether the router holds both gateway addresses (what keepalived adds on its VRRP master). */
export function holdsGateways(lab: LabTopology, router: RouterName): boolean {
  const held = gatewaysHeld(lab, router);
  return held.lan && held.wan;
}

/** Which gateway addresses the router holds (one `ip` process for both links). */
export function gatewaysHeld(lab: LabTopology, router: RouterName): { lan: boolean; wan: boolean } {
  const text = lab.exec(lab.ns[router], 'ip', ['-4', '-o', 'addr', 'show']);
  return {
    lan: text.split('\n').some((l) => / lan\s+inet /.test(l) && l.includes(` ${LAB.lanGateway}/`)),
    wan: text.split('\n').some((l) => / wan\s+inet /.test(l) && l.includes(` ${LAB.wanGateway}/`)),
  };
}

/**
 * TCP conntracks towards the lab's server (or another original destination, e.g. a VIP) in a
 * router's kernel table (only ESTABLISHED ones if asked).
 */
export function serverConntracks(lab: LabTopology, router: RouterName, establishedOnly = false, destination: string = LAB.server): number {
  // Counted by wc: the listing of 50,000 conntracks is larger than a spawnSync buffer.
  const list = `conntrack -L -p tcp --orig-dst ${destination}${establishedOnly ? ' --state ESTABLISHED' : ''} 2>/dev/null`;
  const count = Number(lab.exec(lab.ns[router], 'sh', ['-c', `${list} | wc -l`]).trim());
  if (!Number.isInteger(count)) throw new Error(`cannot count the conntracks of ${router}`);
  return count;
}

/**
 * TCP conntracks towards `destination` in a router's kernel table that still carry the synced
 * mark (bit 31, fastpath/linux/linux-engine.ts SYNCED_MARK): on a new master, not yet released.
 */
export function syncedMarkConntracks(lab: LabTopology, router: RouterName, destination: string = LAB.server): number {
  const list = `conntrack -L -p tcp --orig-dst ${destination} --mark 0x80000000/0x80000000 2>/dev/null`;
  const count = Number(lab.exec(lab.ns[router], 'sh', ['-c', `${list} | wc -l`]).trim());
  if (!Number.isInteger(count)) throw new Error(`cannot count the synced conntracks of ${router}`);
  return count;
}

export class LabAgentPair {
  private constructor(readonly ha1: LabAgent, readonly ha2: LabAgent) {}

  /**
   * Starts both agents, configures them (`config(router)` adds to the pair's options, e.g. whether
   * ha-fp-conntrack is enabled) and waits for the election. The agents are pushed on `started` as
   * soon as they run, so the caller stops them even when this throws.
   */
  static async start(lab: LabTopology, opts: Omit<PairConfigOptions, 'priority'>, started: LabAgent[]): Promise<LabAgentPair> {
    const starts = await Promise.allSettled([LabAgent.start(lab.ns.ha1), LabAgent.start(lab.ns.ha2)]);
    for (const s of starts) if (s.status === 'fulfilled') started.push(s.value);
    const failed = starts.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
    const [ha1, ha2] = started.slice(-2) as [LabAgent, LabAgent];
    // ha1 first, with the higher priority: it wins the election and holds the gateways.
    await ha1.configureWithNcclient(pairConfigXml('ha1', { ...opts, priority: 200 }));
    await until(() => holdsGateways(lab, 'ha1'), 'ha1 (VRRP priority 200) to hold both gateway addresses', 20_000);
    await ha2.configureWithNcclient(pairConfigXml('ha2', { ...opts, priority: 100 }));
    const pair = new LabAgentPair(ha1, ha2);
    let states = { ha1: '', ha2: '' };
    await until(async () => {
      states = { ha1: await pair.groupState('ha1'), ha2: await pair.groupState('ha2') };
      return states.ha1 === 'master' && states.ha2 === 'backup' && holdsGateways(lab, 'ha1') && !holdsGateways(lab, 'ha2');
    }, () => `HA group g1 master on ha1 and backup on ha2 (last seen ${JSON.stringify(states)})`, 30_000, 250);
    return pair;
  }

  /** HA group g1's `current-state` as the router's agent reports it ('' when absent). */
  async groupState(router: RouterName): Promise<string> {
    return leafText(await this[router].get(HA_GROUP_FILTER), 'current-state') ?? '';
  }
}
