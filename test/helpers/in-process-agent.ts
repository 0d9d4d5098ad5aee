// Start the agent inside the test process on a free loopback port, with a temp state dir, one
// password user and one key user, and an injected dispatcher. stop() removes everything.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startAgent, type RunningAgent } from '../../agent/agent.js';
import type { RpcDispatcher } from '../../agent/netconf/rpc-dispatcher.js';
import type { ServerLimits } from '../../agent/ssh/netconf-ssh-server.js';
import { UserStore } from '../../agent/ssh/user-store.js';
import { generateParsableKeyPair } from '../../agent/ssh/key-pair.js';

export interface InProcessAgent {
  agent: RunningAgent;
  host: string;
  port: number;
  stateDir: string;
  /** User with password PASSWORD. */
  user: string;
  password: string;
  /** User with a key; its private key (OpenSSH format). */
  keyUser: string;
  privateKey: string;
  stop(): Promise<void>;
}

export async function startInProcessAgent(dispatcher: RpcDispatcher, limits: Partial<ServerLimits> = {}): Promise<InProcessAgent> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'tandem-proto-'));
  try {
    const users = new UserStore(stateDir);
    await users.add('alice', { password: 'alice-secret' });
    const pair = generateParsableKeyPair('ed25519', {}, 'tandem test key');
    await users.add('bob', { publicKey: pair.public });
    const agent = await startAgent({ stateDir, listen: { host: '127.0.0.1', port: 0 }, engine: 'soft', dispatcher, limits });
    return {
      agent, host: agent.host, port: agent.port, stateDir, user: 'alice', password: 'alice-secret', keyUser: 'bob', privateKey: pair.private,
      stop: async () => {
        await agent.close();
        await rm(stateDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(stateDir, { recursive: true, force: true });
    throw err;
  }
}
