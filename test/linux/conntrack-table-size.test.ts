import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tableSizeFor, inHostNetworkNamespace } from '../../fastpath/linux/conntrack-table-size.js';
import { NamespaceFixture, isRoot } from '../../lab/namespace-fixture.js';

const MODULE = fileURLToPath(new URL('../../fastpath/linux/conntrack-table-size.js', import.meta.url));

describe('linux: conntrack table sizing', () => {
  it('sizes the buckets at a power of two of at least a quarter of the maximum', () => {
    expect(tableSizeFor(1_048_576)).to.deep.equal({ max: 1_048_576, buckets: 262_144 });
    expect(tableSizeFor(1_000_000)).to.deep.equal({ max: 1_000_000, buckets: 262_144 });
    expect(tableSizeFor(100_000)).to.deep.equal({ max: 100_000, buckets: 32_768 });
    expect(tableSizeFor(10)).to.deep.equal({ max: 10, buckets: 1024 });
  });

  describe('ownership of the host table (root)', function () {
    const fx = new NamespaceFixture('ts');
    before(function () {
      if (!isRoot()) {
        console.log('    (skipped: needs root to create a network namespace)');
        this.skip();
      }
    });
    after(() => fx.cleanup());

    it('is the host namespace\'s, and no other namespace\'s', () => {
      expect(inHostNetworkNamespace()).to.equal(true);
      const ns = fx.add('a');
      const inside = execFileSync('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e',
        `import { inHostNetworkNamespace } from ${JSON.stringify(MODULE)}; console.log(inHostNetworkNamespace());`], { encoding: 'utf8' });
      expect(inside.trim()).to.equal('false');
    });
  });
});
