// `tandem traffic start|replay|stop|status`: the tandem-traffic RPCs and state of a running agent,
// called over NETCONF (SSH) like any other client would.
import { stdin, stdout } from 'node:process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { XmlElement } from '../agent/netconf/xml-element.js';
import { findAll, findText, NetconfClient, RpcErrorReply } from './netconf-client.js';

const NS = 'urn:tandem:yang:tandem-traffic';

export const TRAFFIC_USAGE = `tandem traffic start --vrf VRF [--count N] [--rate FLOWS/S] [--duration SEC] [--mix tcp=W,udp=W,icmp=W]
             [--source-prefix PREFIX] [--destination ADDR[:PORT] | --virtual-service NAME]
             [--established-share PERCENT] [--max-open N] [--seed N]
tandem traffic replay FILE --vrf VRF       (pcap or pcapng, a path on the agent's host)
tandem traffic stop [ID]                   (every running source without ID)
tandem traffic status [ID]
  connection: [--host 127.0.0.1] [--port 8830] --user NAME, password in TANDEM_PASSWORD or with --password-stdin
`;

export class TrafficUsageError extends Error {}

const CONNECTION = {
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '8830' },
  user: { type: 'string' },
  'password-stdin': { type: 'boolean', default: false },
} as const;

async function password(fromStdin: boolean): Promise<string> {
  if (!fromStdin) {
    const p = process.env.TANDEM_PASSWORD;
    if (!p) throw new TrafficUsageError('give the password in TANDEM_PASSWORD or with --password-stdin');
    return p;
  }
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function leaf(name: string, v: string | undefined): string {
  return v === undefined ? '' : `<${name}>${esc(v)}</${name}>`;
}

/** The start-traffic input from the command line. */
export function startInput(v: Record<string, string | boolean | undefined>): string {
  if (typeof v.vrf !== 'string') throw new TrafficUsageError('start needs --vrf VRF');
  let mix = '';
  if (typeof v.mix === 'string') {
    const weights: Record<string, string> = {};
    for (const part of v.mix.split(',')) {
      const m = /^(tcp|udp|icmp)=(\d+)$/.exec(part.trim());
      if (!m) throw new TrafficUsageError(`--mix wants tcp=W,udp=W,icmp=W, got '${v.mix}'`);
      weights[m[1] as string] = m[2] as string;
    }
    // Protocols not named get weight 0 (the YANG default of tcp is 100).
    mix = `<protocol-mix>${['tcp', 'udp', 'icmp'].map((p) => leaf(p, weights[p] ?? '0')).join('')}</protocol-mix>`;
  }
  let dest = '';
  if (typeof v.destination === 'string') {
    const m = /^(\d+\.\d+\.\d+\.\d+)(?::(\d+))?$/.exec(v.destination);
    if (!m) throw new TrafficUsageError(`--destination wants an IPv4 address with an optional :PORT, got '${v.destination}'`);
    dest = leaf('destination-address', m[1]) + leaf('destination-port', m[2]);
  }
  if (typeof v['virtual-service'] === 'string') {
    if (dest) throw new TrafficUsageError('give --destination or --virtual-service, not both');
    dest = leaf('virtual-service', v['virtual-service']);
  }
  const s = (k: string): string | undefined => (typeof v[k] === 'string' ? v[k] : undefined);
  return `<start-traffic xmlns="${NS}">${leaf('vrf', v.vrf)}${leaf('count', s('count'))}${leaf('rate', s('rate'))}${leaf('duration', s('duration'))}`
    + `${mix}${leaf('source-prefix', s('source-prefix'))}${dest}${leaf('established-share', s('established-share'))}`
    + `${leaf('max-open', s('max-open'))}${leaf('seed', s('seed'))}</start-traffic>`;
}

/** One line per source: what `tandem traffic status` prints. */
export function formatSources(reply: XmlElement): string {
  const sources = findAll(reply, 'source');
  if (sources.length === 0) return 'no traffic source yet\n';
  const lines = sources.map((s) => {
    const t = (n: string): string => findText(s, n) ?? '-';
    const what = t('kind') === 'pcap-replay'
      ? `${t('format')} ${t('file')} read ${t('packets-read')} skipped ${t('packets-skipped')}`
      : `flows opened ${t('flows-opened')} open ${t('flows-open')} closed ${t('flows-closed')}`;
    const err = findText(s, 'error');
    return `${t('id')}\t${t('kind')}\t${t('vrf')}\t${t('status')}\t${what}; packets ${t('packets')} forwarded ${t('forwarded')}`
      + ` dropped: firewall ${t('dropped-firewall')} backup ${t('dropped-backup')} invalid ${t('dropped-invalid')}`
      + ` table-full ${t('dropped-table-full')} nat ${t('dropped-nat')}${err ? `; error: ${err}` : ''}`;
  });
  return `${['id', 'kind', 'vrf', 'status', 'progress'].join('\t')}\n${lines.join('\n')}\n`;
}

export async function runTraffic(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const options = {
    ...CONNECTION,
    vrf: { type: 'string' }, count: { type: 'string' }, rate: { type: 'string' }, duration: { type: 'string' }, mix: { type: 'string' },
    'source-prefix': { type: 'string' }, destination: { type: 'string' }, 'virtual-service': { type: 'string' },
    'established-share': { type: 'string' }, 'max-open': { type: 'string' }, seed: { type: 'string' },
  } as const;
  const { values, positionals } = parseArgs({ args: rest, strict: true, allowPositionals: true, options });
  const id = positionals[0];
  if (id !== undefined && sub !== 'replay' && !/^\d+$/.test(id)) throw new TrafficUsageError(`ID must be a number, got '${id}'`);
  let op: string;
  switch (sub) {
    case 'start':
      op = startInput(values);
      break;
    case 'replay': {
      if (!id || typeof values.vrf !== 'string') throw new TrafficUsageError('replay needs FILE and --vrf VRF');
      op = `<replay-pcap xmlns="${NS}">${leaf('vrf', values.vrf)}${leaf('file', path.resolve(id))}</replay-pcap>`;
      break;
    }
    case 'stop':
      op = `<stop-traffic xmlns="${NS}">${leaf('id', id)}</stop-traffic>`;
      break;
    case 'status':
      op = `<get><filter type="subtree"><traffic xmlns="${NS}"><source>${leaf('id', id)}</source></traffic></filter></get>`;
      break;
    default:
      throw new TrafficUsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand 'traffic ${sub}'`);
  }
  if (!values.user) throw new TrafficUsageError('give --user NAME');
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TrafficUsageError(`--port must be 1..65535, got '${values.port}'`);
  const client = await NetconfClient.connect({ host: values.host, port, username: values.user, password: await password(values['password-stdin']) });
  try {
    const reply = await client.rpc(op);
    if (sub === 'status') stdout.write(formatSources(reply));
    else if (sub === 'stop') stdout.write(`tandem: stopped ${findText(reply, 'stopped') ?? '0'} traffic source(s)\n`);
    else stdout.write(`tandem: traffic source ${findText(reply, 'id') ?? '?'} started; follow it with: tandem traffic status ${findText(reply, 'id') ?? ''}\n`);
    return 0;
  } catch (err) {
    if (err instanceof RpcErrorReply) {
      process.stderr.write(`tandem: the agent refused: ${err.message} (${err.tag}${err.path ? ` at ${err.path}` : ''})\n`);
      return 1;
    }
    throw err;
  } finally {
    client.close();
  }
}
