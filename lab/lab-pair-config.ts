// The configuration of one router of the HA pair, as a user sends it over NETCONF (edit-config
// on the candidate, then commit): the linux engine; HA group g1 with no static state (VRRP drives
// it); VRRP on the client-side (lan) and server-side (wan) links, 100 ms adverts, the lan instance
// controlling g1; the firewall dropping mid-stream packets of unknown connections; CG-NAT SNAT of
// the client lan to the shared pool; and ha-fp-conntrack with the other router as peer over the
// sync link, a shared secret, listening to g1. Both routers get the same firewall and CG-NAT.
import { LAB, type RouterName } from './lab-topology.js';

/** The routers' dataplane, the same on both nodes (the seed: firewall and CG-NAT must match): stateful firewall dropping mid-stream packets of unknown connections, SNAT to the shared pool. */
export const LAB_DATAPLANE_XML = `<firewall xmlns="urn:tandem:yang:tandem-firewall">
      <default-action>accept</default-action>
      <drop-invalid>true</drop-invalid>
    </firewall>
    <cg-nat xmlns="urn:tandem:yang:tandem-cg-nat">
      <pool><name>shared</name><prefix>${LAB.natPool}</prefix>
        <port-range><start>1024</start><end>65535</end></port-range><port-block-size>8064</port-block-size></pool>
      <rule><name>clients</name><source-prefix>10.1.0.0/25</source-prefix><pool>shared</pool></rule>
    </cg-nat>`;

export const LAB_SHARED_SECRET = 'lab-sync-secret-0123456789abcdef';
export const LAB_HA_GROUP = 'g1';
/** The virtual service of the mirroring variant: VIP:port, DNAT to the server's port 7000. */
export const LAB_VS = { name: 'web', vip: '10.9.9.9', port: 80, memberPort: 7000 } as const;

export interface PairConfigOptions {
  /** ha-fp-conntrack/enabled (false: the control run, no synchronisation). */
  sync: boolean;
  /** VRRP priority (the higher wins the election). */
  priority: number;
  /** Adds the virtual service LAB_VS, whose tcp-fast-path profile has this connection-mirror. */
  virtualService?: { mirror: boolean };
  /** VRRP advert-interval of both instances, centiseconds (default 10: 0.1 s). */
  advertIntervalCs?: number;
}

export function pairConfigXml(router: RouterName, opts: PairConfigOptions): string {
  const me = LAB.routers[router];
  const peer = LAB.routers[router === 'ha1' ? 'ha2' : 'ha1'];
  const vrrp = (name: string, vrid: number, address: string, haGroup: boolean) => `
        <vrrp><name>${name}</name><link-interface>${name}</link-interface><vrid>${vrid}</vrid>
          <priority>${opts.priority}</priority><virtual-address>${address}</virtual-address>
          <advert-interval>${opts.advertIntervalCs ?? 10}</advert-interval><preempt>true</preempt>${haGroup ? `<ha-group>${LAB_HA_GROUP}</ha-group>` : ''}</vrrp>`;
  const vs = opts.virtualService;
  const profile = vs ? `
  <network-profile xmlns="urn:tandem:yang:tandem-network-profile"><name>mirrored</name><type>tcp-fast-path</type>
    <tcp-fast-path><connection-mirror>${vs.mirror}</connection-mirror></tcp-fast-path></network-profile>` : '';
  const service = vs ? `
    <virtual-service xmlns="urn:tandem:yang:tandem-virtual-service">
      <name>${LAB_VS.name}</name><vip>${LAB_VS.vip}</vip><port>${LAB_VS.port}</port><protocol>tcp</protocol>
      <pool-member><address>${LAB.server}</address><port>${LAB_VS.memberPort}</port></pool-member>
      <network-profile>mirrored</network-profile>
    </virtual-service>` : '';
  return `<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <system xmlns="urn:tandem:yang:tandem-system"><fast-path><engine>linux</engine></fast-path></system>${profile}
  <ha xmlns="urn:tandem:yang:tandem-ha"><group><name>${LAB_HA_GROUP}</name></group></ha>
  <vrf xmlns="urn:tandem:yang:tandem-vrf">
    <name>main</name>
    <vrrp><enabled>true</enabled><router-id>${me.sync}</router-id></vrrp>
    <interface>${vrrp('lan', LAB.vrid.lan, LAB.lanGateway, true)}${vrrp('wan', LAB.vrid.wan, LAB.wanGateway, false)}
    </interface>
${LAB_DATAPLANE_XML}${service}
    <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack">
      <enabled>${opts.sync}</enabled>
      <peer><name>peer</name><source>${me.sync}</source><address>${peer.sync}</address></peer>
      <listen-ha-group>${LAB_HA_GROUP}</listen-ha-group>
      <shared-secret>${LAB_SHARED_SECRET}</shared-secret>
    </ha-fp-conntrack>
  </vrf>
</config>`;
}

/** `<get>` filters for the state the failover watches. */
export const HA_GROUP_FILTER = `<ha xmlns="urn:tandem:yang:tandem-ha"><group><name>${LAB_HA_GROUP}</name></group></ha>`;
export const SYNC_STATE_FILTER = `<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
  <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack"/></vrf>`;

export const VS_STATE_FILTER = `<vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>
  <virtual-service xmlns="urn:tandem:yang:tandem-virtual-service"><name>${LAB_VS.name}</name><tcpstat/></virtual-service></vrf>`;

/** A leaf's text in a `<get>` reply (first occurrence), or undefined. */
export function leafText(xml: string, leaf: string): string | undefined {
  const m = new RegExp(`<(?:[\\w-]+:)?${leaf}(?:\\s[^>]*)?>([^<]*)</(?:[\\w-]+:)?${leaf}>`).exec(xml);
  return m?.[1];
}
