// The contract between ha/ (which decides the HA role of each VRF and puts its dataplane in it)
// and the subsystems that follow roles without depending on ha/ (sync): sync asks for a VRF's role
// when it starts synchronising it and hears every later change.

export type HaRoleName = 'master' | 'backup';

export interface VrfRoles {
  /** The role of a VRF now (its listen-ha-group's state; backup when it has none). */
  roleOf(vrf: string): HaRoleName;
  /** Follow role changes of VRFs, heard after the VRF's dataplane took the role; returns unsubscribe. */
  onVrfRole(fn: (vrf: string, role: HaRoleName) => void): () => void;
}

/** Roles for a component used without ha/ (a benchmark, a unit test): every VRF master. */
export const ALWAYS_MASTER: VrfRoles = {
  roleOf: () => 'master',
  onVrfRole: () => () => undefined,
};
