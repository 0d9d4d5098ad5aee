// Memory: 100,000 parse/validate/print/free cycles (one in ten failing, so error records are drained too)
// must leave the wasm heap where the warm-up left it, and the wasm memory must not grow.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createYangContext, projectRoot, WasmYangContext, YangException, type YangContext } from '../../yang/libyang/index.js';

const NS = 'xmlns="urn:tandem:test:tb-test"';
const VALID = `<settings ${NS}><hostname>r1</hostname><mtu>9000</mtu></settings><interface ${NS}><name>a</name><peer>b</peer></interface><interface ${NS}><name>b</name></interface>`;
const INVALID = `<interface ${NS}><name>a</name><peer>a</peer></interface>`;
const CYCLES = 100_000;
const WARM_UP = 5_000;
const DEADLINE_MS = 100_000;

describe('libyang binding memory', function () {
  this.timeout(DEADLINE_MS + 20_000);
  let ctx: YangContext | undefined;

  after(function () {
    ctx?.free();
  });

  it(`frees everything over ${CYCLES.toLocaleString('en')} parse/validate/free cycles`, async function () {
    const c = await createYangContext({ searchDirs: [join(projectRoot(), 'test', 'yang', 'fixtures', 'binding')] });
    ctx = c;
    c.loadModule('tb-test');
    expect(c).to.be.instanceOf(WasmYangContext);
    const wasmCtx = c as WasmYangContext;
    let failures = 0;
    let printed = 0;
    const cycle = (i: number): void => {
      if (i % 10 === 9) {
        try {
          c.parse(INVALID, { format: 'xml', kind: 'config' }).free();
        } catch (e) {
          if (!(e instanceof YangException) || e.errors[0].appTag !== 'self-peer') throw e;
          failures++;
        }
        return;
      }
      const t = c.parse(VALID, { format: 'xml', kind: 'config', validate: false });
      try {
        t.validate({ configOnly: true });
        printed += t.print({ format: 'json' }).length;
      } finally {
        t.free();
      }
    };

    const started = Date.now();
    for (let i = 0; i < WARM_UP; i++) cycle(i);
    const heapAfterWarmUp = c.heapUsed();
    const memoryAfterWarmUp = wasmCtx.wasmMemoryBytes();
    for (let i = 0; i < CYCLES; i++) {
      cycle(i);
      if (i % 1000 === 0 && Date.now() - started > DEADLINE_MS) expect.fail(`only ${i} cycles in ${DEADLINE_MS} ms`);
    }
    const heapAtEnd = c.heapUsed();
    const memoryAtEnd = wasmCtx.wasmMemoryBytes();
    const seconds = (Date.now() - started) / 1000;
    // Figures for the report (not asserted on time).
    console.log(`      heapUsed after warm-up ${heapAfterWarmUp} B, at end ${heapAtEnd} B; wasm memory ${memoryAfterWarmUp} -> ${memoryAtEnd} B; ${WARM_UP + CYCLES} cycles in ${seconds.toFixed(1)} s`);

    expect(failures).to.equal(CYCLES / 10 + WARM_UP / 10);
    expect(printed).to.be.greaterThan(0);
    expect(wasmCtx.liveTreeCount()).to.equal(0);
    // The dictionary of interned strings may settle by a few bytes; a leak of even 1 byte per cycle would
    // show as 100 kB here.
    expect(heapAtEnd - heapAfterWarmUp).to.be.at.most(4096);
    expect(memoryAtEnd).to.equal(memoryAfterWarmUp);
  });

  it('frees trees that were dropped without free() once they are garbage-collected', async function () {
    // A child process with --expose-gc: drop 2,000 parsed trees, collect, and compare the wasm heap.
    const index = pathToFileURL(join(projectRoot(), 'dist', 'yang', 'libyang', 'index.js')).href;
    const fixtures = join(projectRoot(), 'test', 'yang', 'fixtures', 'binding');
    const script = `
      const { createYangContext } = await import(${JSON.stringify(index)});
      const c = await createYangContext({ searchDirs: [${JSON.stringify(fixtures)}] });
      c.loadModule('tb-test');
      const before = c.heapUsed();
      for (let i = 0; i < 2000; i++) c.parse(${JSON.stringify(VALID)}, { format: 'xml', kind: 'config' });
      const dropped = c.heapUsed();
      for (let i = 0; i < 20 && c.liveTreeCount() > 0; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); }
      console.log(JSON.stringify({ before, dropped, after: c.heapUsed(), live: c.liveTreeCount() }));
      c.free();`;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--expose-gc', '--input-type=module', '-e', script],
        { timeout: 30_000, env: { ...process.env, TANDEM_LOG_LEVEL: 'silent' } },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
    });
    const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { before: number; dropped: number; after: number; live: number };
    expect(r.dropped - r.before).to.be.greaterThan(2000 * 100); // the trees really were on the heap
    expect(r.live).to.equal(0);
    expect(r.after).to.equal(r.before);
  });
});
