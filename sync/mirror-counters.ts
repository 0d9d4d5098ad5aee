// Conntracks per virtual service with connection mirroring: on the master the synced ones
// (mirror-conn-list-on-active), on the standby the received ones (mirrored-connections-on-standby).
// A conntrack counts once, under the service it was last seen with.
export class MirrorCounters {
  private readonly serviceOf = new Map<string, string>();
  private readonly counts = new Map<string, number>();

  /** Counts conntrack `key` under `service` (moving it if it was counted under another). */
  set(key: string, service: string): void {
    const old = this.serviceOf.get(key);
    if (old === service) return;
    this.bump(old, -1);
    this.serviceOf.set(key, service);
    this.bump(service, 1);
  }

  delete(key: string): void {
    if (this.serviceOf.size === 0) return;
    const service = this.serviceOf.get(key);
    if (service === undefined) return;
    this.serviceOf.delete(key);
    this.bump(service, -1);
  }

  clear(): void {
    this.serviceOf.clear();
    this.counts.clear();
  }

  count(service: string): number {
    return this.counts.get(service) ?? 0;
  }

  entries(): IterableIterator<[string, number]> {
    return this.counts.entries();
  }

  private bump(service: string | undefined, by: number): void {
    if (service === undefined) return;
    const n = (this.counts.get(service) ?? 0) + by;
    if (n <= 0) this.counts.delete(service);
    else this.counts.set(service, n);
  }
}
