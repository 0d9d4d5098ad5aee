// One piece of the factory configuration: the configuration a fresh state directory starts with.
// Each area adds its own fragment (a file in this folder, listed in factory-config.ts); a fragment
// holds whole top-level subtrees that no other fragment also holds.
export interface FactoryFragment {
  /** Names the fragment in logs. */
  name: string;
  /** Top-level configuration elements (with their namespaces), as in the body of an edit-config <config>. */
  xml: string;
}
