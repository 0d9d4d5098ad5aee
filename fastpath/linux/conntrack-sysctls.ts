// The kernel conntrack settings of a VRF's namespace that follow from its configuration: the
// per-state timeouts of network-stack/fast-path/conntrack/timeouts, and strict TCP pickup (a
// mid-stream segment never creates a conntrack) when the firewall drops invalid packets; and
// conntrack events always on (see below).
import { execFile } from 'node:child_process';
import type { Timeouts } from '../config/vrf-config.js';

/** sysctl name -> value for the namespace (net.netfilter.* are per network namespace). */
export function conntrackSysctls(timeouts: Timeouts, dropInvalid: boolean): Record<string, number> {
  const t = timeouts.tcp;
  return {
    // 1, not the kernel's default 2 ("only for conntracks created while someone listens"): a
    // backup runs no event reader, so the conntracks sync writes there would never report their
    // end after a failover (no delete to the peer, no CG-NAT block release log).
    'net.netfilter.nf_conntrack_events': 1,
    'net.netfilter.nf_conntrack_tcp_loose': dropInvalid ? 0 : 1,
    'net.netfilter.nf_conntrack_tcp_timeout_syn_sent': t['syn-sent'],
    'net.netfilter.nf_conntrack_tcp_timeout_syn_recv': t['syn-recv'],
    'net.netfilter.nf_conntrack_tcp_timeout_established': t.established,
    'net.netfilter.nf_conntrack_tcp_timeout_fin_wait': t['fin-wait'],
    'net.netfilter.nf_conntrack_tcp_timeout_close_wait': t['close-wait'],
    'net.netfilter.nf_conntrack_tcp_timeout_last_ack': t['last-ack'],
    'net.netfilter.nf_conntrack_tcp_timeout_time_wait': t['time-wait'],
    'net.netfilter.nf_conntrack_tcp_timeout_close': t.close,
    'net.netfilter.nf_conntrack_udp_timeout_stream': timeouts.udp,
    'net.netfilter.nf_conntrack_icmp_timeout': timeouts.icmp,
    'net.netfilter.nf_conntrack_icmpv6_timeout': timeouts.icmp,
  };
}

/** Writes the settings inside the namespace (undefined: the agent's own) with sysctl(8). */
export function applySysctls(namespace: string | undefined, settings: Record<string, number>): Promise<void> {
  const assignments = Object.entries(settings).map(([k, v]) => `${k}=${v}`);
  const [cmd, args] = namespace === undefined
    ? ['sysctl', ['-q', '-w', ...assignments]]
    : ['ip', ['netns', 'exec', namespace, 'sysctl', '-q', '-w', ...assignments]];
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`sysctl in ${namespace ?? 'the agent namespace'} failed: ${(stderr || err.message).trim()}`));
      else resolve();
    });
  });
}
