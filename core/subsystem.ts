// How a subsystem (fastpath, sync, ha) takes part in a commit, in FRR northbound style: the
// transaction computes the commit's changes once (data paths with create/modify/delete), hands
// every subsystem only the changes under the schema paths it owns, then runs validate -> prepare
// -> apply on all of them; abort on all of them if any prepare fails; undo on the ones already
// applied if an apply fails (running then stays as it was).

/** What happened to a data node (a whole subtree for create/delete of a container or list entry). */
export type ChangeOperation = 'create' | 'modify' | 'delete';

export interface ConfigChange {
  operation: ChangeOperation;
  /** Data path with module prefixes and key predicates, e.g. "/tandem-vrf:vrf[name='main']/tandem-firewall:firewall/rule[name='r1']". */
  path: string;
  /** The same path without predicates, e.g. "/tandem-vrf:vrf/tandem-firewall:firewall/rule". */
  schemaPath: string;
}

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
  /**
   * The changes of this commit under the subsystem's `owns` paths (each subsystem gets its own
   * slice, computed once per commit from the edit's path operations or libyang's diff). Absent
   * when unknown: the subsystem then compares oldConfig and newConfig itself.
   */
  changes?: ConfigChange[];
  /**
   * The configuration restored at start: a resource that is not there yet (a sync source address
   * not up) is retried in the background rather than refusing to start the agent.
   */
  startup?: boolean;
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
  /**
   * Make the staged configuration live. Should not fail (prepare did what can fail); if it throws
   * anyway, the transaction calls undo on it and on every subsystem applied before it, and the
   * commit is refused. A SubsystemApplyError names the data path that failed.
   */
  apply(ctx: CommitContext): Promise<void>;
  /** Release what prepare staged. */
  abort(ctx: CommitContext): Promise<void>;
  /**
   * Put back ctx.oldConfig after apply (complete or partial) when the commit is rolled back because
   * an apply failed. Best effort: it is the old, already-working configuration. A subsystem
   * without undo cannot be rolled back: the commit is then refused with that said.
   */
  undo?(ctx: CommitContext): Promise<void>;
}

/** An apply that failed at a known data path. */
export class SubsystemApplyError extends Error {
  constructor(message: string, readonly path?: string) {
    super(message);
    this.name = 'SubsystemApplyError';
  }
}

/**
 * Test-only fault injection, given to the commit transaction as a constructor option (never read
 * from configuration or NETCONF): called between the phases of every transaction.
 */
export interface CommitFaultHooks {
  /** After every subsystem prepared, before the first apply (e.g. remove a namespace). */
  afterPrepare?(ctx: CommitContext): Promise<void> | void;
  /** Before one subsystem's apply; throwing makes that apply fail. */
  beforeApply?(subsystem: string, ctx: CommitContext): Promise<void> | void;
}

/**
 * Operational state a subsystem contributes: a function that returns RFC 7951 JSON (state nodes,
 * with their list keys) to be merged into <get> and get-data on the operational datastore.
 */
export interface StateProvider {
  readonly name: string;
  /**
   * Schema paths of the state subtrees this provider fills (e.g. "/tandem-ha:ha"). A <get> whose
   * filter selects none of them (nor anything above them) does not call it. Absent: always called.
   */
  readonly paths?: string[];
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
