// edit-config finds list entries through an identity -> position index that copies of an array
// share (agent/datastore/edit-config.ts): random edits of an ordered-by-user list of rules (merge of
// an existing rule, a new one at the end, positioned inserts and moves, delete, remove, replace),
// each applied to the last version or to an older one (whose index a newer copy shares), give
// exactly what a plain list model gives, and no version is changed by an edit of another.
import { expect } from 'chai';
import type { YangContext } from '../../yang/libyang/api.js';
import { SchemaIndex } from '../../agent/datastore/schema-index.js';
import { applyEdit, configFromXml } from '../../agent/datastore/edit-config.js';
import { configToXml, type ConfigRoot } from '../../agent/datastore/config-tree.js';
import { parseXml } from '../../agent/netconf/xml-parser.js';
import { yangContext } from './ops-harness.js';
import { prng } from '../helpers/prng.js';

const NC = 'urn:ietf:params:xml:ns:netconf:base:1.0';
const YANG = 'urn:ietf:params:xml:ns:yang:1';
const FW = 'urn:tandem:yang:tandem-firewall';

type Rule = { name: string; action: string };

function rulesXml(rules: string): string {
  return `<config xmlns="${NC}"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name><firewall xmlns="${FW}" xmlns:nc="${NC}" xmlns:yang="${YANG}">${rules}</firewall></vrf></config>`;
}

function ruleXml(r: Rule, attrs = ''): string {
  return `<rule${attrs}><name>${r.name}</name><action>${r.action}</action></rule>`;
}

/** The rules of a version, in order, as its XML says. */
function rulesOf(root: ConfigRoot, schema: SchemaIndex): Rule[] {
  const xml = configToXml(root, (m) => schema.namespaceOf(m));
  return [...xml.matchAll(/<rule><name>([^<]*)<\/name><action>([^<]*)<\/action><\/rule>/g)].map((m) => ({ name: m[1]!, action: m[2]! }));
}

describe('netconf-ops: edit-config on copies that share a position index', function () {
  this.timeout(120_000);
  let yang: YangContext;
  let schema: SchemaIndex;

  before(async () => {
    yang = await yangContext();
    schema = new SchemaIndex(yang);
  });

  it('300 random edits of a 40-rule list, on the newest or an older version, match a list model', () => {
    const rnd = prng(11);
    const first: Rule[] = Array.from({ length: 40 }, (_, i) => ({ name: `r${i}`, action: 'accept' }));
    const versions: { root: ConfigRoot; model: Rule[] }[] = [
      { root: configFromXml(parseXml(rulesXml(first.map((r) => ruleXml(r)).join(''))), schema), model: first },
    ];
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    for (let step = 0; step < 300; step++) {
      // Mostly the newest version (as the candidate is edited), sometimes an older one.
      const base = rnd() < 0.8 ? versions.at(-1)! : pick(versions);
      const model = base.model.map((r) => ({ ...r }));
      const snapshot = JSON.stringify(rulesOf(base.root, schema));
      const r = rnd();
      let edit: string;
      if (r < 0.35 && model.length) {
        const target = pick(model);
        target.action = target.action === 'accept' ? 'drop' : 'accept';
        edit = ruleXml(target);
      } else if (r < 0.5) {
        const added = { name: `n${step}`, action: 'drop' };
        model.push(added);
        edit = ruleXml(added);
      } else if (r < 0.65 && model.length) {
        const ref = pick(model);
        const added = { name: `i${step}`, action: 'accept' };
        const before = rnd() < 0.5;
        model.splice(model.indexOf(ref) + (before ? 0 : 1), 0, added);
        edit = ruleXml(added, ` yang:insert="${before ? 'before' : 'after'}" yang:key="[name='${ref.name}']"`);
      } else if (r < 0.72 && model.length > 1) {
        // A move of an existing rule to the front.
        const moved = pick(model);
        model.splice(model.indexOf(moved), 1);
        model.unshift(moved);
        edit = ruleXml(moved, ' yang:insert="first"');
      } else if (r < 0.85 && model.length) {
        const gone = pick(model);
        model.splice(model.indexOf(gone), 1);
        edit = `<rule nc:operation="${rnd() < 0.5 ? 'delete' : 'remove'}"><name>${gone.name}</name></rule>`;
      } else if (model.length) {
        const target = pick(model);
        target.action = 'reject';
        edit = ruleXml(target, ' nc:operation="replace"');
      } else {
        const added = { name: `z${step}`, action: 'drop' };
        model.push(added);
        edit = ruleXml(added);
      }
      // Two edits in one request sometimes: the second one finds its rule through the first one's copy.
      if (rnd() < 0.2 && model.length) {
        const target = pick(model);
        target.action = 'drop';
        edit += ruleXml(target);
      }
      const out = applyEdit(base.root, parseXml(rulesXml(edit)), schema, { defaultOperation: 'merge', errorOption: 'stop-on-error' });
      expect(rulesOf(out.root, schema), `step ${step}: ${edit}`).to.deep.equal(model);
      expect(JSON.stringify(rulesOf(base.root, schema)), `step ${step}: the version edited is unchanged`).to.equal(snapshot);
      versions.push({ root: out.root, model });
      if (versions.length > 12) versions.splice(1, 1);
    }
  });
});
