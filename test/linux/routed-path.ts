// The topology of the linux engine's traffic tests: client 10.1.0.2 — router (where the engine's
// VRF lives) — server 10.77.1.2, with a tcp-load server listening on each of the given ports.
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { JsonLines, type NamespaceFixture } from '../../lab/namespace-fixture.js';

export const TCP_LOAD = fileURLToPath(new URL('../../lab/tcp-load.js', import.meta.url));

export interface RoutedPath {
  client: string;
  router: string;
  server: string;
  /** The tcp-load servers, in the order of the ports given. */
  servers: ChildProcess[];
}

/** Builds the three namespaces in `fx` (removed by its cleanup) and waits for every server. */
export async function routedPath(fx: NamespaceFixture, ports: number[]): Promise<RoutedPath> {
  const client = fx.add('cli');
  const router = fx.add('rtr');
  const server = fx.add('srv');
  fx.link(client, 'eth0', '10.1.0.2/24', router, 'eth0', '10.1.0.1/24');
  fx.link(router, 'eth1', '10.77.1.1/24', server, 'eth0', '10.77.1.2/24');
  fx.exec(router, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  fx.exec(client, 'ip', ['route', 'add', 'default', 'via', '10.1.0.1']);
  fx.exec(server, 'ip', ['route', 'add', 'default', 'via', '10.77.1.1']);
  const servers: ChildProcess[] = [];
  for (const port of ports) {
    const proc = fx.spawn(server, process.execPath, [TCP_LOAD, 'server', '0.0.0.0', String(port)]);
    servers.push(proc);
    await new JsonLines(proc).next((l) => l.ready === true);
  }
  return { client, router, server, servers };
}
