// YangContext.renew() moves a context to a fresh libyang instance to give its grown linear memory
// back; the process-wide instance (yang/libyang/wasm-module.ts) must move with it, or it keeps the
// old instance, and all its memory, reachable for the life of the process.
import { expect } from 'chai';
import { loadTandemContext, WasmYangContext } from '../../yang/libyang/index.js';
import { libyangWasm } from '../../yang/libyang/wasm-module.js';

describe('libyang: the process-wide instance after a renewal', function () {
  this.timeout(120_000);

  it('is the fresh instance once the context living in it was renewed; other instances are left alone', async () => {
    const ctx = await loadTandemContext();
    try {
      expect(ctx).to.be.instanceOf(WasmYangContext);
      const w = ctx as WasmYangContext;
      const shared = await libyangWasm();
      if (w.wasm !== shared) await w.renew(); // another suite renewed first: it now lives in the shared one
      const old = w.wasm;
      expect(old).to.equal(await libyangWasm());
      await w.renew();
      expect(w.wasm).not.to.equal(old);
      expect(await libyangWasm(), 'the shared instance moved to the fresh one').to.equal(w.wasm);
      // A context that lives in the shared instance's predecessor no longer decides: renewing a second
      // context that is not in the shared instance leaves the shared one as it is.
      const other = await loadTandemContext() as WasmYangContext;
      try {
        expect(other.wasm).to.equal(w.wasm);
        await w.renew();
        const sharedNow = await libyangWasm();
        expect(sharedNow).to.equal(w.wasm);
        await other.renew();
        expect(await libyangWasm(), 'renewing a context outside the shared instance moves nothing').to.equal(sharedNow);
      } finally {
        other.free();
      }
    } finally {
      ctx.free();
    }
  });
});
