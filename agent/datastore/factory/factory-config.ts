// The factory configuration: the fragments below, composed into one <config> document. A fresh
// state directory (no running, startup or rollback file) starts with it as running, and startup
// is created equal to it, unless `tandem start --startup FILE` gives the initial configuration.
import { NETCONF_BASE_NS } from '../edit-config.js';
import type { FactoryFragment } from './factory-fragment.js';
import { NSX_NETWORK_PROFILES } from './nsx-network-profiles.js';

export const FACTORY_FRAGMENTS: readonly FactoryFragment[] = [
  NSX_NETWORK_PROFILES,
];

export function factoryConfigXml(fragments: readonly FactoryFragment[] = FACTORY_FRAGMENTS): string {
  return `<config xmlns="${NETCONF_BASE_NS}">${fragments.map((f) => f.xml).join('')}</config>\n`;
}
