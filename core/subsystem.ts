// How a subsystem (fastpath, sync, ha) takes part in a commit, in FRR northbound style: the
// transaction hands every subsystem the old and new configuration of the subtrees it owns, then
// runs validate -> prepare -> apply on all of them, or abort on all of them if any prepare fails.

/** RFC 7951 JSON of the whole configuration, printed with defaults (report-all), as parsed by JSON.parse. */
export type ConfigJson = Record<string, unknown>;

export interface CommitContext {
  /** Monotonic id of this transaction, for logs. */
  id: number;
  /** Configuration before and after the commit (whole tree; subsystems read the parts they own). */
  oldConfig: ConfigJson;
  newConfig: ConfigJson;
  /**
   * Added by the operations layer: data paths the commit changed (module names as prefixes, e.g.
   * "/tandem-vrf:vrf[name='main']/tandem-firewall:firewall/rule[name='r1']"), when they are known
   * (an edit replayed on running); absent when the whole configuration may have changed
   * (copy-config, confirmed-commit revert, start). A subsystem may use it to skip unchanged parts.
   */
  changedPaths?: string[];
}

/** A problem found by validate or prepare, reported to the client as an rpc-error. */
export interface SubsystemError {
  message: string;
  /** Data path of the offending node, e.g. "/tandem-vrf:vrf[name='main']/tandem-firewall:firewall". */
  path?: string;
  appTag?: string;
}

export interface CommitSubsystem {
  readonly name: string;
  /**
   * Schema paths of the subtrees this subsystem owns (e.g. "/tandem-system:system/fast-path").
   * Every config node under them must be handled; a node the subsystem does not implement yet is
   * reported by validate as "not yet implemented: <path>".
   */
  readonly owns: string[];
  /** Cheap checks that libyang cannot express; no side effects. */
  validate(ctx: CommitContext): SubsystemError[] | Promise<SubsystemError[]>;
  /** Allocate and stage everything; must be undoable by abort. Throw (or return errors) to fail. */
  prepare(ctx: CommitContext): Promise<SubsystemError[]>;
  /** Make the staged configuration live. Must not fail. */
  apply(ctx: CommitContext): Promise<void>;
  /** Release what prepare staged. */
  abort(ctx: CommitContext): Promise<void>;
}

/**
 * Operational state a subsystem contributes: a function that returns RFC 7951 JSON (state nodes,
 * with their list keys) to be merged into <get> and get-data on the operational datastore.
 */
export interface StateProvider {
  readonly name: string;
  state(): ConfigJson | Promise<ConfigJson>;
}

/** A NETCONF notification raised by a subsystem, as RFC 7951 JSON of the notification node. */
export type NotificationSink = (notification: ConfigJson) => void;

/** A YANG RPC implemented by a subsystem (e.g. ha-fp-conntrack-synchronization). */
export interface RpcProvider {
  /** Schema path of the rpc, e.g. "/tandem-ha-fp-conntrack:ha-fp-conntrack-synchronization". */
  readonly rpcPath: string;
  /** Input and output as RFC 7951 JSON (output {} for an empty reply). */
  invoke(input: ConfigJson): Promise<ConfigJson>;
}
