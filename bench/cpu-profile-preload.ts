// Preloaded into a process under benchmark (NODE_OPTIONS=--import; Node 20 refuses --cpu-prof
// there): profiles its main thread from start, and writes a .cpuprofile into CPU_PROFILE_DIR on SIGUSR2.
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

const dir = process.env.CPU_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 200 }, () => session.post('Profiler.start')));
  process.on('SIGUSR2', () => {
    session.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(path.join(dir, `tandem-${process.pid}-${Date.now()}.cpuprofile`), JSON.stringify(res.profile));
      session.post('Profiler.start');
    });
  });
}
