// The committed wasm build matches what yang/wasm/INPUTS.md records (so a rebuilt binary cannot be committed
// without its provenance), and it loads without emscripten installed: only the two committed files are used.
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createYangContext, projectRoot } from '../../yang/libyang/index.js';

const WASM_DIR = join(projectRoot(), 'yang', 'wasm');

function recorded(file: string): { bytes: number; sha256: string } {
  const inputs = readFileSync(join(WASM_DIR, 'INPUTS.md'), 'utf8');
  const row = new RegExp(`\\| \`${file.replace('.', '\\.')}\` \\| (\\d+) \\| \`([0-9a-f]{64})\` \\|`).exec(inputs);
  expect(row, `row for ${file} in INPUTS.md`).to.not.equal(null);
  return { bytes: Number(row![1]), sha256: row![2] };
}

describe('libyang wasm build outputs', function () {
  for (const file of ['libyang.js', 'libyang.wasm']) {
    it(`${file} has the size and sha256 recorded in INPUTS.md`, function () {
      const path = join(WASM_DIR, file);
      const want = recorded(file);
      expect(statSync(path).size).to.equal(want.bytes);
      expect(createHash('sha256').update(readFileSync(path)).digest('hex')).to.equal(want.sha256);
    });
  }

  it('loads and enforces YANG patterns through the built-in PCRE2', async function () {
    const ctx = await createYangContext({ searchDirs: [join(projectRoot(), 'test', 'yang', 'fixtures', 'binding')] });
    try {
      ctx.loadModule('tb-test');
      const yangText = ctx.schemaText('ietf-yang-library', undefined, 'yang');
      expect(yangText).to.contain('module ietf-yang-library');
      const t = ctx.parse('<settings xmlns="urn:tandem:test:tb-test"><hostname>ok-name</hostname></settings>', { format: 'xml', kind: 'config' });
      t.free();
      expect(() => ctx.parse('<settings xmlns="urn:tandem:test:tb-test"><hostname>Bad_Name</hostname></settings>', { format: 'xml', kind: 'config' }))
        .to.throw(/pattern|Unsatisfied/);
    } finally {
      ctx.free();
    }
  });
});
