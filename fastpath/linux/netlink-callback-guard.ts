// Every JS callback handed to the `netlink` addon (a socket's 'message', 'truncatedMessage' and
// 'error' listeners, send()'s completion callback) runs inside the addon's native poll handler:
// a throw that escapes it becomes a C++ Napi::Error nobody catches, and the process aborts. Each
// such callback is wrapped here: a throw is caught, logged, counted, and handed to the owner's
// `onThrow`, which fails the request the callback belonged to (never a silent success).
//
// Test hook: injectNetlinkCallbackThrow(site) makes the next call of that site's callbacks throw
// before they run, as a bug in them would (test/linux/netlink-callback-guard.test.ts).
import { logger } from '../../core/log.js';

const log = logger('netlink');

/** The sockets whose callbacks are guarded (a label in logs and for the test hook). */
export type NetlinkCallbackSite = 'ctnetlink' | 'conntrack-events' | 'nft-counters' | 'nft-rule-edit' | 'guard-removal';

let thrown = 0;
let injected: NetlinkCallbackSite | undefined;

/** Throws caught in callbacks of the netlink addon since the process started. */
export function netlinkCallbackThrows(): number {
  return thrown;
}

/** Test hook: the next callback of `site` throws before it runs (once). */
export function injectNetlinkCallbackThrow(site: NetlinkCallbackSite | undefined): void {
  injected = site;
}

/** `fn` as a callback for the addon: it cannot throw into it; a throw goes to `onThrow`. */
export function guardNetlinkCallback<A extends unknown[]>(
  site: NetlinkCallbackSite, fn: (...args: A) => void, onThrow: (err: Error, ...args: A) => void,
): (...args: A) => void {
  return (...args: A): void => {
    try {
      if (injected === site) {
        injected = undefined;
        throw new Error(`injected throw in a ${site} netlink callback (test hook)`);
      }
      fn(...args);
    } catch (err) {
      thrown++;
      const e = err instanceof Error ? err : new Error(String(err));
      log.error({ site, err: e.message, throws: thrown }, 'a netlink callback threw: its request fails');
      try {
        onThrow(e, ...args);
      } catch (again) {
        log.error({ site, err: String(again) }, 'failing the request of a netlink callback that threw also threw');
      }
    }
  };
}
