// A stand-in for the agent in tests: runs one KeepalivedProcess until it is killed.
// Usage: node keepalived-runner.js <vrf> <netns> <confPath> <stateDir>
import { KeepalivedProcess } from '../../ha/vrrp/keepalived-process.js';

const [vrf, netns, confPath, stateDir] = process.argv.slice(2);
if (!vrf || !netns || !confPath || !stateDir) {
  process.stderr.write('usage: keepalived-runner <vrf> <netns> <confPath> <stateDir>\n');
  process.exit(2);
}
new KeepalivedProcess({ vrf, netns, confPath, stateDir }).start();
// Bounded: a runner nobody kills ends by itself.
setTimeout(() => process.exit(0), 60_000);
