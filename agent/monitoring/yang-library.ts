// ietf-yang-library (RFC 8525, NMDA) and its deprecated modules-state (RFC 7895) for older clients,
// plus the matching hello capabilities.
import { createHash } from 'node:crypto';
import type { ModuleInfo, YangContext } from '../../yang/libyang/api.js';
import { escapeText } from '../datastore/config-tree.js';

export const YANG_LIBRARY_NS = 'urn:ietf:params:xml:ns:yang:ietf-yang-library';
const DS_NS = 'urn:ietf:params:xml:ns:yang:ietf-datastores';

/** Identifies this set of modules; changes whenever a module, revision or feature does. */
export function contentId(modules: ModuleInfo[]): string {
  const h = createHash('sha256');
  for (const m of [...modules].sort((a, b) => a.name.localeCompare(b.name))) {
    h.update(`${m.name}@${m.revision ?? ''}:${m.implemented}:${m.features.join(',')};`);
  }
  return h.digest('hex').slice(0, 16);
}

function moduleBody(m: ModuleInfo, withFeatures: boolean): string {
  let o = `<name>${escapeText(m.name)}</name>`;
  if (m.revision) o += `<revision>${m.revision}</revision>`;
  o += `<namespace>${escapeText(m.namespace)}</namespace>`;
  if (withFeatures) for (const f of m.features) o += `<feature>${escapeText(f)}</feature>`;
  for (const s of m.submodules) o += `<submodule><name>${escapeText(s.name)}</name>${s.revision ? `<revision>${s.revision}</revision>` : ''}</submodule>`;
  return o;
}

/** Printed yang-library by module set (the context hands out the same array until a module is loaded). */
const libraryMemo = new WeakMap<readonly ModuleInfo[], Map<string, string>>();
const capabilitiesMemo = new WeakMap<readonly ModuleInfo[], readonly string[]>();

export function yangLibraryXml(yang: YangContext, datastores: string[]): string {
  const modules = yang.modules();
  let byDs = libraryMemo.get(modules);
  if (!byDs) libraryMemo.set(modules, byDs = new Map());
  const key = datastores.join(' ');
  let text = byDs.get(key);
  if (text === undefined) byDs.set(key, text = printYangLibrary(modules, datastores));
  return text;
}

function printYangLibrary(modules: ModuleInfo[], datastores: string[]): string {
  const id = contentId(modules);
  const o: string[] = [`<yang-library xmlns="${YANG_LIBRARY_NS}"><module-set><name>complete</name>`];
  for (const m of modules.filter((x) => x.implemented)) o.push(`<module>${moduleBody(m, true)}</module>`);
  for (const m of modules.filter((x) => !x.implemented)) {
    o.push(`<import-only-module>${moduleBody(m, false)}</import-only-module>`);
  }
  o.push('</module-set><schema><name>complete</name><module-set>complete</module-set></schema>');
  for (const d of datastores) o.push(`<datastore><name xmlns:ds="${DS_NS}">ds:${d}</name><schema>complete</schema></datastore>`);
  o.push(`<content-id>${id}</content-id></yang-library>`);
  // RFC 7895 view for clients that predate NMDA.
  o.push(`<modules-state xmlns="${YANG_LIBRARY_NS}"><module-set-id>${id}</module-set-id>`);
  for (const m of modules) {
    o.push(`<module><name>${escapeText(m.name)}</name><revision>${m.revision ?? ''}</revision><namespace>${escapeText(m.namespace)}</namespace>`);
    if (m.implemented) for (const f of m.features) o.push(`<feature>${escapeText(f)}</feature>`);
    o.push(`<conformance-type>${m.implemented ? 'implement' : 'import'}</conformance-type>`);
    for (const s of m.submodules) o.push(`<submodule><name>${escapeText(s.name)}</name><revision>${s.revision ?? ''}</revision></submodule>`);
    o.push('</module>');
  }
  o.push('</modules-state>');
  return o.join('');
}

/** Hello capabilities that announce the modules and the yang-library (the same array while the modules stay). */
export function moduleCapabilities(yang: YangContext): readonly string[] {
  const modules = yang.modules();
  let caps = capabilitiesMemo.get(modules);
  if (!caps) capabilitiesMemo.set(modules, caps = Object.freeze(printCapabilities(modules)));
  return caps;
}

function printCapabilities(modules: ModuleInfo[]): string[] {
  const caps = [
    `urn:ietf:params:netconf:capability:yang-library:1.1?revision=2019-01-04&content-id=${contentId(modules)}`,
  ];
  for (const m of modules.filter((x) => x.implemented)) {
    let c = `${m.namespace}?module=${m.name}`;
    if (m.revision) c += `&revision=${m.revision}`;
    if (m.features.length) c += `&features=${m.features.join(',')}`;
    caps.push(c);
  }
  return caps;
}
