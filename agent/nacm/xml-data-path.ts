// Data paths of the elements of printed XML data (a reply body, a libyang diff): the module from the
// element's namespace, list keys from the schema, so that NACM rules can be matched against them.
import type { XmlElement } from '../netconf/xml-element.js';
import type { DataSchemaNode, SchemaIndex } from '../datastore/schema-index.js';
import type { PathStep } from './data-path.js';

export interface ElementStep {
  step: PathStep;
  /** The element's schema node; undefined for data outside the YANG context. */
  schema: DataSchemaNode | undefined;
}

/** The path step of `el`, a child of the node whose schema path is `parentSchemaPath` ('/' at the top). */
export function elementStep(schema: SchemaIndex, parentSchemaPath: string | undefined, el: XmlElement): ElementStep {
  const sn = parentSchemaPath === undefined ? undefined : schema.findChild(parentSchemaPath, el.ns, el.name);
  const module = sn?.module ?? schema.moduleByNamespace(el.ns)?.name ?? el.ns;
  const step: PathStep = { module, name: el.name };
  if (sn?.kind === 'list' && sn.keys.length) {
    step.keys = sn.keys.map((k) => [k, el.children.find((c) => c.name === k)?.text.trim() ?? '']);
  }
  return { step, schema: sn };
}
