// Child process of test/linux/netlink-callback-guard.test.ts: a ctnetlink request in `namespace`
// while a callback the addon calls throws. `bare`: a listener added outside the guard (what every
// callback was before it), which aborts the process inside the addon; `guarded`: the guard's test
// hook. Prints the request's outcome and "survived" when the process goes on.
import { ConntrackNetlink } from '../../fastpath/linux/conntrack-netlink.js';
import { injectNetlinkCallbackThrow } from '../../fastpath/linux/netlink-callback-guard.js';

const [mode, namespace] = process.argv.slice(2);
const nl = new ConntrackNetlink({ namespace });
if (mode === 'bare') {
  (nl as unknown as { socket: { on(e: string, f: () => void): void } }).socket.on('message', () => {
    throw new Error('a bare listener threw');
  });
} else {
  injectNetlinkCallbackThrow('ctnetlink');
}
try {
  await nl.dump(() => undefined);
  console.log('request: succeeded');
} catch (err) {
  console.log(`request: failed: ${String(err)}`);
}
nl.close();
console.log('survived');
