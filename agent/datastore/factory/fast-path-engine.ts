// The engine `tandem start --engine` chose, in the factory configuration of a fresh node that does
// not run the default (soft): the fastpath subsystem refuses a configuration whose
// system/fast-path/engine differs from the running engine, and the YANG default is soft.
import type { FactoryFragment } from './factory-fragment.js';

export function fastPathEngineFragment(engine: 'linux' | 'soft'): FactoryFragment {
  return {
    name: 'fast-path-engine',
    xml: `<system xmlns="urn:tandem:yang:tandem-system"><fast-path><engine>${engine}</engine></fast-path></system>`,
  };
}
