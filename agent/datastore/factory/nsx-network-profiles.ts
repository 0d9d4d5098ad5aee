// The network profiles NSX Advanced Load Balancer pre-provisions, with the values its
// `show networkprofile System-TCP-Fast-Path` prints (seed 000): TCP fast path, idle timeout 300 s,
// no SYN protection, connection_mirror False. The other system profiles of the types the seed names:
// TCP proxy (which cannot mirror) and UDP fast path. Ordinary configuration: editable, removable.
import type { FactoryFragment } from './factory-fragment.js';

const NP = 'urn:tandem:yang:tandem-network-profile';

export const NSX_NETWORK_PROFILES: FactoryFragment = {
  name: 'nsx-network-profiles',
  xml: `<network-profile xmlns="${NP}"><name>System-TCP-Fast-Path</name><type>tcp-fast-path</type>`
    + '<tcp-fast-path><session-idle-timeout>300</session-idle-timeout><enable-syn-protection>false</enable-syn-protection>'
    + '<connection-mirror>false</connection-mirror></tcp-fast-path></network-profile>'
    + `<network-profile xmlns="${NP}"><name>System-TCP-Proxy</name><type>tcp-proxy</type></network-profile>`
    + `<network-profile xmlns="${NP}"><name>System-UDP-Fast-Path</name><type>udp-fast-path</type></network-profile>`,
};
