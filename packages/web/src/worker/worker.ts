/**
 * The relp Web Worker: loads models and runs the attribution methods off the main thread, posting progress.
 * In a worker script: `import { startRelpWorker } from '@relp/web/worker'; startRelpWorker();`
 *
 * A run computes without yielding to the worker's event loop, so a "cancel" message reaches it only between
 * downloads and reads; `RelpWorkerClient` stops a computing run by terminating the worker and starting a fresh one.
 */
import '../runtime/gradients.js';
import * as tf from '@tensorflow/tfjs-core';
import { type LoadedWebModel, loadWebModel, modelKey, prepareData, runMethods } from '../experiment.js';
import { type BrowserBackendChoice, selectBrowserBackend, type WasmPaths } from '../runtime/backend.js';
import { describeError } from '../runtime/errors.js';
import type {
  LoadRequest,
  ProgressEvent,
  RunOutput,
  RunRequest,
  WorkerRequest,
  WorkerResponse,
} from './protocol.js';

interface WorkerScope {
  onmessage: ((ev: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerResponse): void;
}

export function startRelpWorker(scope: WorkerScope = globalThis as unknown as WorkerScope): void {
  let backend: { choice: BrowserBackendChoice; requested: string } | undefined;
  let loaded: { key: string; backend: string; value: LoadedWebModel } | undefined;
  const controllers = new Map<number, AbortController>();
  let queue: Promise<void> = Promise.resolve();

  const ensureBackend = async (requested: string, wasmPaths: WasmPaths | undefined) => {
    if (backend && backend.requested === requested) return backend.choice;
    const choice = await selectBrowserBackend({
      requested,
      ...(wasmPaths === undefined ? {} : { wasmPaths }),
    });
    backend = { choice, requested };
    return choice;
  };

  /** The backend and the model of a request, reusing what is loaded. */
  const ensureModel = async (id: number, req: LoadRequest) => {
    const progress = (p: ProgressEvent) => scope.postMessage({ type: 'progress', id, progress: p });
    const signal = controllers.get(id)?.signal;
    progress({ stage: 'backend', message: 'selecting a backend' });
    const choice = await ensureBackend(req.backend ?? 'auto', req.wasmPaths);
    scope.postMessage({ type: 'backend', id, choice });
    const key = modelKey(req.model);
    if (!loaded || loaded.key !== key || loaded.backend !== choice.name) {
      loaded?.value.model.dispose();
      loaded = undefined;
      progress({ stage: 'load', message: 'loading the model' });
      const value = await loadWebModel(req.model, { onProgress: progress, ...(signal ? { signal } : {}) });
      loaded = { key, backend: choice.name, value };
    }
    return { choice, value: loaded.value };
  };

  const run = async (id: number, req: RunRequest): Promise<RunOutput> => {
    const t0 = performance.now();
    const progress = (p: ProgressEvent) => scope.postMessage({ type: 'progress', id, progress: p });
    const signal = controllers.get(id)?.signal;
    const { choice, value } = await ensureModel(id, req);
    const { model, tokenizer, summary } = value;
    progress({ stage: 'tokenize', message: 'building and tokenising the prompt pairs' });
    const data = prepareData(req.data, model, tokenizer);
    const { results, correlations } = await runMethods(model, data.pairs, {
      methods: req.methods,
      ...(req.sites ? { sites: req.sites } : {}),
      ...(req.normalize === undefined ? {} : { normalize: req.normalize }),
      ...(req.igSteps === undefined ? {} : { igSteps: req.igSteps }),
      ...(req.maxBatchRows === undefined ? {} : { maxBatchRows: req.maxBatchRows }),
      ...(signal ? { signal } : {}),
      onProgress: progress,
    });
    return {
      backend: choice,
      model: summary,
      tokens: data.tokens,
      nPairs: data.pairs.length,
      droppedNote: data.droppedNote,
      prompts: data.prompts.slice(0, 20),
      results,
      correlations,
      seconds: (performance.now() - t0) / 1000,
    };
  };

  scope.onmessage = (ev) => {
    const msg = ev.data;
    if (msg.type === 'cancel') {
      controllers.get(msg.id)?.abort();
      return;
    }
    const controller = new AbortController();
    controllers.set(msg.id, controller);
    // One job at a time: tfjs state (backend, memory) is shared.
    queue = queue.then(async () => {
      try {
        if (msg.type === 'backend') {
          const choice = await ensureBackend(msg.requested ?? 'auto', msg.wasmPaths);
          scope.postMessage({ type: 'backend', id: msg.id, choice });
          scope.postMessage({ type: 'result', id: msg.id, output: undefined as unknown as RunOutput });
        } else if (msg.type === 'load') {
          const { value } = await ensureModel(msg.id, msg.request);
          scope.postMessage({ type: 'loaded', id: msg.id, model: value.summary });
        } else {
          const output = await run(msg.id, msg.request);
          scope.postMessage({ type: 'result', id: msg.id, output });
        }
      } catch (e) {
        if (backend && tf.getBackend() === undefined) backend = undefined;
        scope.postMessage({ type: 'error', id: msg.id, error: describeError(e) });
      } finally {
        controllers.delete(msg.id);
      }
    });
  };
}

export type { RunOutput, RunRequest, WorkerRequest, WorkerResponse } from './protocol.js';
