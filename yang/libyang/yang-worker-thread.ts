// The thread side of YangWorker (yang-worker.ts): a libyang instance of its own, with a context
// built from the main thread's recipe, doing one heavy call at a time (parse and validation of a
// large document, the diff and print of a large datastore) while the main thread keeps serving.
import { parentPort, workerData } from 'node:worker_threads';
import { YangException, type DataTree, type YangContext, type YangContextRecipe } from './api.js';
import { createYangContext } from './index.js';
import type { YangWorkerReply, YangWorkerRequest } from './yang-worker-protocol.js';

const port = parentPort;
if (!port) throw new Error('yang-worker-thread.js runs only as a worker thread');
const { recipe } = workerData as { recipe: YangContextRecipe };

async function buildContext(): Promise<YangContext> {
  const ctx = await createYangContext({ searchDirs: recipe.searchDirs ? recipe.searchDirs.split(':') : [] });
  for (const l of recipe.loads) ctx.loadModule(l.name, { revision: l.revision, features: l.features });
  return ctx;
}

const ready = buildContext();

/**
 * The configuration the last 'commit' request validated (the running of the next commit, if that
 * one is committed): a following large commit diffs against it without parsing it again.
 */
let last: { text: string; tree: DataTree } | undefined;

function forgetLast(): void {
  last?.tree.free();
  last = undefined;
}

function configTree(ctx: YangContext, text: string): DataTree {
  if (text === '') {
    const t = ctx.newTree();
    t.validate({ configOnly: true });
    return t;
  }
  return ctx.parse(text, { format: 'xml', kind: 'config', validate: true });
}

async function handle(req: YangWorkerRequest): Promise<YangWorkerReply> {
  const ctx = await ready;
  switch (req.op) {
    case 'check': {
      const tree = ctx.parse(req.text, { format: 'xml', kind: req.kind, validate: req.validate });
      tree.free();
      return { id: req.id, ok: true };
    }
    case 'commit': {
      const prev = last && last.text === req.prevText ? last.tree : configTree(ctx, req.prevText);
      const reused = prev === last?.tree;
      let next: DataTree;
      try {
        next = configTree(ctx, req.nextText);
      } catch (err) {
        if (!reused) prev.free();
        throw err;
      }
      try {
        const diff = prev.diff(next, 'json');
        const json = next.print({ format: 'json', withDefaults: 'report-all' });
        if (reused) forgetLast();
        else prev.free();
        last = { text: req.nextText, tree: next };
        return { id: req.id, ok: true, diff, json };
      } catch (err) {
        next.free();
        if (!reused) prev.free();
        throw err;
      }
    }
    case 'forget':
      forgetLast();
      return { id: req.id, ok: true };
  }
}

port.on('message', (req: YangWorkerRequest) => {
  handle(req).then((reply) => port.postMessage(reply), (err: unknown) => {
    const reply: YangWorkerReply = err instanceof YangException
      ? { id: req.id, ok: false, yangErrors: err.errors }
      : { id: req.id, ok: false, message: err instanceof Error ? err.message : String(err) };
    port.postMessage(reply);
  });
});
