// What anti-entropy counts in one VRF, shown as state data (`anti-entropy` under ha-fp-conntrack)
// on both nodes: the master counts the rounds it ran and what its peers reported repaired, the
// backup the digests it answered and the repairs it applied.

export interface RepairCounts {
  ranges: number;
  added: number;
  updated: number;
  removed: number;
  /** Repaired conntracks the engine refused (also in receive-error on the backup). */
  refused: number;
}

export class AntiEntropyStats {
  /** Master: rounds in which a digest went to at least one connection. Backup: digest requests answered. */
  rounds = 0;
  lastRound: string | undefined;
  rangesCompared = 0;
  rangesDiffering = 0;
  /** Ranges not compared because live sync messages touched them during the round (re-checked next round). */
  rangesSkipped = 0;
  readonly repaired: RepairCounts = { ranges: 0, added: 0, updated: 0, removed: 0, refused: 0 };
  lastDivergence: string | undefined;

  addRepair(c: RepairCounts): void {
    this.repaired.ranges += c.ranges;
    this.repaired.added += c.added;
    this.repaired.updated += c.updated;
    this.repaired.removed += c.removed;
    this.repaired.refused += c.refused;
  }
}

/** RFC 7951 JSON of the `anti-entropy` container (counters as strings: uint64). */
export function antiEntropyState(s: AntiEntropyStats): Record<string, unknown> {
  return {
    rounds: String(s.rounds),
    ...(s.lastRound ? { 'last-round': s.lastRound } : {}),
    'ranges-compared': String(s.rangesCompared),
    'ranges-differing': String(s.rangesDiffering),
    'ranges-skipped': String(s.rangesSkipped),
    'conntracks-repaired': {
      added: String(s.repaired.added),
      updated: String(s.repaired.updated),
      removed: String(s.repaired.removed),
      refused: String(s.repaired.refused),
    },
    ...(s.lastDivergence ? { 'last-divergence': s.lastDivergence } : {}),
  };
}
