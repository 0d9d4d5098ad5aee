// Running's tree of a large configuration built in slices (agent/datastore/sliced-tree.ts) is the
// tree a whole parse gives: the same printed XML and JSON in every with-defaults mode, no diff,
// whatever the slice size cuts (top-level nodes, list entries, nested lists, ordered-by-user lists).
import { expect } from 'chai';
import type { YangContext } from '../../yang/libyang/api.js';
import { SchemaIndex } from '../../agent/datastore/schema-index.js';
import { configFromXml } from '../../agent/datastore/edit-config.js';
import { configToXml, type ConfigRoot } from '../../agent/datastore/config-tree.js';
import { parseXml } from '../../agent/netconf/xml-parser.js';
import { slicedTree, xmlSlices } from '../../agent/datastore/sliced-tree.js';
import { generateRunningConfig } from '../../bench/yang-config-generator.js';
import { yangContext } from './ops-harness.js';

describe('netconf-ops: running\'s tree built in slices', function () {
  this.timeout(300_000);
  let yang: YangContext;
  let schema: SchemaIndex;
  let root: ConfigRoot;
  const nsOf = (m: string) => schema.namespaceOf(m);

  before(async () => {
    yang = await yangContext();
    schema = new SchemaIndex(yang);
    const text = generateRunningConfig({ virtualServices: 60, firewallRules: 600, membersPerService: 3 });
    const doc = parseXml(/^<(\w+:)?config[\s>]/.test(text.trim()) ? text : `<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">${text}</config>`, { maxSize: 1e9 });
    root = configFromXml(doc, schema);
  });


  for (const maxChars of [200, 4096, 65536, 1e9]) {
    it(`pieces of at most ${maxChars} characters make the tree a whole parse makes`, async () => {
      const whole = yang.parse(configToXml(root, nsOf), { format: 'xml', kind: 'config', validate: true });
      const slices = xmlSlices(root, nsOf, maxChars);
      if (maxChars < 1e9) expect(slices.length, 'the configuration was cut').to.be.greaterThan(1);
      const sliced = await slicedTree(yang, root, nsOf, { maxChars });
      try {
        for (const withDefaults of ['explicit', 'report-all', 'trim', 'report-all-tagged'] as const) {
          for (const format of ['xml', 'json'] as const) {
            expect(sliced.print({ format, withDefaults }), `${format} ${withDefaults}`).to.equal(whole.print({ format, withDefaults }));
          }
        }
        expect(whole.diff(sliced, 'json')).to.equal('');
      } finally {
        whole.free();
        sliced.free();
      }
    });
  }

  it('throws libyang\'s error for an invalid configuration and leaves no tree behind', async () => {
    const bad = configFromXml(parseXml('<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><vrf xmlns="urn:tandem:yang:tandem-vrf"><name>main</name>'
      + '<firewall xmlns="urn:tandem:yang:tandem-firewall"><rule><name>x</name><protocol>tcp</protocol></rule></firewall></vrf></config>'), schema);
    const heap = yang.heapUsed();
    let failed: unknown;
    try {
      (await slicedTree(yang, bad, nsOf, { maxChars: 50 })).free();
    } catch (err) {
      failed = err;
    }
    expect(failed).to.have.property('errors');
    expect(yang.heapUsed()).to.be.at.most(heap + 64 * 1024);
  });
});
