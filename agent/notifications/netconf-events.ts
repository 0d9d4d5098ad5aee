// The base notifications of RFC 6470 (ietf-netconf-notifications), as event element text.
import { escapeText } from '../datastore/config-tree.js';
import type { EditChange } from '../datastore/edit-config.js';

export const NETCONF_NOTIFICATIONS_NS = 'urn:ietf:params:xml:ns:yang:ietf-netconf-notifications';

export interface ChangedBy {
  username: string;
  sessionId: number;
  sourceHost?: string;
}

function sessionParms(by: ChangedBy): string {
  return `<username>${escapeText(by.username)}</username><session-id>${by.sessionId}</session-id>`
    + (by.sourceHost ? `<source-host>${escapeText(by.sourceHost)}</source-host>` : '');
}

/** Instance-identifier text with module names as prefixes, and the declarations it needs. */
function target(path: string, nsOf: (module: string) => string | undefined): string {
  const decl = new Set<string>();
  for (const m of path.matchAll(/\/([A-Za-z_][\w.-]*):/g)) decl.add(m[1]);
  const xmlns = [...decl].map((m) => ` xmlns:${m}="${escapeText(nsOf(m) ?? '')}"`).join('');
  return `<target${xmlns}>${escapeText(path)}</target>`;
}

export function configChangeEvent(by: ChangedBy, datastore: 'running' | 'startup', edits: EditChange[],
  nsOf: (module: string) => string | undefined): string {
  const editXml = edits.slice(0, 1000).map((e) => `<edit>${target(e.path, nsOf)}<operation>${e.operation}</operation></edit>`).join('');
  return `<netconf-config-change xmlns="${NETCONF_NOTIFICATIONS_NS}"><changed-by>${sessionParms(by)}</changed-by>`
    + `<datastore>${datastore}</datastore>${editXml}</netconf-config-change>`;
}

export function sessionStartEvent(by: ChangedBy): string {
  return `<netconf-session-start xmlns="${NETCONF_NOTIFICATIONS_NS}">${sessionParms(by)}</netconf-session-start>`;
}

export function sessionEndEvent(by: ChangedBy, reason: string, killedBy?: number): string {
  const term = reason === 'closed' ? 'closed' : reason === 'killed' ? 'killed' : reason === 'timeout' ? 'timeout' : 'dropped';
  return `<netconf-session-end xmlns="${NETCONF_NOTIFICATIONS_NS}">${sessionParms(by)}`
    + (killedBy !== undefined && term === 'killed' ? `<killed-by>${killedBy}</killed-by>` : '')
    + `<termination-reason>${term}</termination-reason></netconf-session-end>`;
}

export type ConfirmEvent = 'start' | 'cancel' | 'timeout' | 'extend' | 'complete';

export function confirmedCommitEvent(by: ChangedBy | undefined, event: ConfirmEvent, timeoutSeconds?: number): string {
  return `<netconf-confirmed-commit xmlns="${NETCONF_NOTIFICATIONS_NS}">${by ? sessionParms(by) : ''}`
    + `<confirm-event>${event}</confirm-event>`
    + (timeoutSeconds !== undefined && (event === 'start' || event === 'extend') ? `<timeout>${timeoutSeconds}</timeout>` : '')
    + '</netconf-confirmed-commit>';
}
