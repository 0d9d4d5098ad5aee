// Generates a large, valid tandem running configuration (XML) for the parse + validate benchmark:
// N virtual services with pool members across network profiles, M ordered firewall rules, CG-NAT,
// conntrack settings and HA conntrack synchronisation, all in VRF main. Deterministic for given sizes.

export interface GeneratedConfigSize {
  virtualServices: number;
  firewallRules: number;
  /** Pool members per virtual service. */
  membersPerService: number;
}

export const DEFAULT_SIZE: GeneratedConfigSize = { virtualServices: 1000, firewallRules: 10000, membersPerService: 4 };

const MAX_VIRTUAL_SERVICES = 250 * 250; // one vip per 10.x.y.1 address, x and y in 1..250
const MAX_FIREWALL_RULES = 1_000_000;

function ipv4(a: number, b: number, c: number, d: number): string {
  return `${a}.${b}.${c}.${d}`;
}

function virtualService(i: number, membersPerService: number): string {
  const vip = ipv4(10, 1 + Math.floor(i / 250), 1 + (i % 250), 1);
  const udp = i % 10 === 9; // one service in ten is UDP
  const profile = udp ? 'System-UDP-Fast-Path' : i % 2 === 0 ? 'System-TCP-Fast-Path' : 'System-TCP-Proxy';
  // client-ip persistence only where mirroring is off (the model refuses the combination).
  const persistence = profile === 'System-TCP-Proxy' && i % 3 === 0 ? 'client-ip' : 'none';
  const members: string[] = [];
  for (let m = 0; m < membersPerService; m++) {
    members.push(`      <pool-member><address>${ipv4(172, 16 + (i % 16), Math.floor(i / 16) % 256, 10 + m)}</address><port>${udp ? 53 : 8080}</port></pool-member>`);
  }
  return [
    '    <virtual-service xmlns="urn:tandem:yang:tandem-virtual-service">',
    `      <name>vs${i}</name>`,
    `      <vip>${vip}</vip>`,
    `      <port>${udp ? 53 : 80}</port>`,
    `      <protocol>${udp ? 'udp' : 'tcp'}</protocol>`,
    ...members,
    `      <network-profile>${profile}</network-profile>`,
    `      <persistence>${persistence}</persistence>`,
    '    </virtual-service>',
  ].join('\n');
}

function firewallRule(i: number): string {
  const kind = i % 4; // tcp with port, udp with port range, icmp, any protocol
  const src = `${ipv4(100, 64 + (i % 64), Math.floor(i / 64) % 256, 0)}/24`;
  const dst = `${ipv4(10, 1 + Math.floor(i / 250) % 250, 1 + (i % 250), 0)}/24`;
  const lines = [`      <rule>`, `        <name>r${i}</name>`];
  if (kind === 0) lines.push('        <protocol>tcp</protocol>');
  if (kind === 1) lines.push('        <protocol>udp</protocol>');
  if (kind === 2) lines.push('        <protocol>icmp</protocol>');
  lines.push(`        <source-prefix>${src}</source-prefix>`, `        <destination-prefix>${dst}</destination-prefix>`);
  if (kind === 0) lines.push(`        <destination-port><start>${1 + (i % 65000)}</start></destination-port>`);
  if (kind === 1) lines.push(`        <source-port><start>1024</start><end>${1024 + (i % 60000)}</end></source-port>`);
  lines.push(`        <action>${i % 7 === 0 ? 'drop' : 'accept'}</action>`, '      </rule>');
  return lines.join('\n');
}

/** The whole configuration document (several top-level elements, as a NETCONF <config> content). */
export function generateRunningConfig(size: GeneratedConfigSize = DEFAULT_SIZE): string {
  const { virtualServices, firewallRules, membersPerService } = size;
  if (!Number.isInteger(virtualServices) || virtualServices < 0 || virtualServices > MAX_VIRTUAL_SERVICES) {
    throw new RangeError(`virtualServices must be an integer in 0..${MAX_VIRTUAL_SERVICES}, not ${virtualServices}`);
  }
  if (!Number.isInteger(firewallRules) || firewallRules < 0 || firewallRules > MAX_FIREWALL_RULES) {
    throw new RangeError(`firewallRules must be an integer in 0..${MAX_FIREWALL_RULES}, not ${firewallRules}`);
  }
  if (!Number.isInteger(membersPerService) || membersPerService < 0 || membersPerService > 200) {
    throw new RangeError(`membersPerService must be an integer in 0..200, not ${membersPerService}`);
  }
  const parts: string[] = [
    '<system xmlns="urn:tandem:yang:tandem-system"><fast-path><engine>soft</engine>',
    '  <limits><cg-nat><nb-event-threads>4</nb-event-threads></cg-nat><conntrack><max>2097152</max></conntrack></limits>',
    '</fast-path></system>',
    '<ha xmlns="urn:tandem:yang:tandem-ha"><group><name>ha-group1</name><state>master</state></group></ha>',
    '<network-profile xmlns="urn:tandem:yang:tandem-network-profile"><name>System-TCP-Fast-Path</name><type>tcp-fast-path</type>',
    '  <tcp-fast-path><session-idle-timeout>300</session-idle-timeout><connection-mirror>true</connection-mirror></tcp-fast-path></network-profile>',
    '<network-profile xmlns="urn:tandem:yang:tandem-network-profile"><name>System-TCP-Proxy</name><type>tcp-proxy</type></network-profile>',
    '<network-profile xmlns="urn:tandem:yang:tandem-network-profile"><name>System-UDP-Fast-Path</name><type>udp-fast-path</type></network-profile>',
    '<vrf xmlns="urn:tandem:yang:tandem-vrf">',
    '  <name>main</name>',
    '  <firewall xmlns="urn:tandem:yang:tandem-firewall">',
    '    <default-action>drop</default-action>',
  ];
  for (let i = 0; i < firewallRules; i++) parts.push(firewallRule(i));
  parts.push('  </firewall>');
  parts.push(
    '  <cg-nat xmlns="urn:tandem:yang:tandem-cg-nat">',
    '    <pool><name>public1</name><prefix>198.51.100.0/24</prefix><port-block-size>512</port-block-size></pool>',
    '    <rule><name>subscribers</name><source-prefix>100.64.0.0/10</source-prefix><pool>public1</pool></rule>',
    '    <logging><allocation>true</allocation><destroy>true</destroy></logging>',
    '  </cg-nat>',
  );
  for (let i = 0; i < virtualServices; i++) parts.push(virtualService(i, membersPerService));
  parts.push(
    '  <network-stack xmlns="urn:tandem:yang:tandem-conntrack"><fast-path><conntrack>',
    '    <timeouts><tcp><undefined>20</undefined></tcp></timeouts>',
    '    <ha-delays><tcp><synchronization>1</synchronization><undefined-grace-period>10</undefined-grace-period></tcp></ha-delays>',
    '  </conntrack></fast-path></network-stack>',
    '  <ha-fp-conntrack xmlns="urn:tandem:yang:tandem-ha-fp-conntrack">',
    '    <peer><name>peer1</name><source>10.150.0.1</source><address>10.150.0.2</address></peer>',
    '    <listen-ha-group>ha-group1</listen-ha-group>',
    '    <shared-secret>bench-Zq7c1Lw9xVt3Ny5R</shared-secret>',
    '  </ha-fp-conntrack>',
    '</vrf>',
  );
  return `${parts.join('\n')}\n`;
}
