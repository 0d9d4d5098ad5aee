// Builders of RFC 7951 VRF configuration for the fast-path tests (as the commit transaction hands it).

export interface VrfJsonOptions {
  tcp?: Record<string, number>;
  udp?: number;
  icmp?: number;
  firewall?: Record<string, unknown>;
  cgNat?: Record<string, unknown>;
  virtualServices?: Record<string, unknown>[];
}

export function vrfJson(name: string, o: VrfJsonOptions = {}): Record<string, unknown> {
  const json: Record<string, unknown> = {
    name,
    'tandem-conntrack:network-stack': {
      'fast-path': {
        conntrack: {
          timeouts: {
            tcp: {
              'syn-sent': 120, 'syn-recv': 60, established: 432000, 'fin-wait': 120, 'close-wait': 60,
              'last-ack': 30, 'time-wait': 120, close: 10, undefined: 10, ...o.tcp,
            },
            udp: o.udp ?? 120,
            icmp: o.icmp ?? 30,
          },
        },
      },
    },
    'tandem-firewall:firewall': { 'default-action': 'accept', 'drop-invalid': true, ...o.firewall },
  };
  if (o.cgNat) json['tandem-cg-nat:cg-nat'] = o.cgNat;
  if (o.virtualServices) json['tandem-virtual-service:virtual-service'] = o.virtualServices;
  return json;
}

export function tcpFastPathProfile(name: string, o: { idle?: number; syn?: boolean; mirror?: boolean } = {}): Record<string, unknown> {
  return {
    name,
    type: 'tcp-fast-path',
    'tcp-fast-path': { 'session-idle-timeout': o.idle ?? 300, 'enable-syn-protection': o.syn ?? false, 'connection-mirror': o.mirror ?? false },
  };
}
