// State data of the HA groups (RFC 7951 JSON; counters are strings): current state, controller,
// transitions, last change.
import type { ConfigJson, StateProvider } from '../core/subsystem.js';
import type { HaGroups } from './ha-groups.js';

export class HaStateProvider implements StateProvider {
  readonly name = 'ha';
  readonly paths = ['/tandem-ha:ha'];

  constructor(private readonly groups: HaGroups) {}

  state(): ConfigJson {
    const groups = this.groups.list();
    if (groups.length === 0) return {};
    return {
      'tandem-ha:ha': {
        group: groups.map((g) => ({
          name: g.name,
          'current-state': g.state,
          controller: g.controller,
          transitions: String(g.transitions),
          ...(g.lastChange ? { 'last-change': g.lastChange } : {}),
        })),
      },
    };
  }
}

/** A group change as the tandem-ha group-state-change notification. */
export function groupStateChangeNotification(n: { group: string; oldState?: string; newState: string; controller: string }): ConfigJson {
  return {
    'tandem-ha:group-state-change': {
      group: n.group,
      ...(n.oldState ? { 'old-state': n.oldState } : {}),
      'new-state': n.newState,
      controller: n.controller,
    },
  };
}
