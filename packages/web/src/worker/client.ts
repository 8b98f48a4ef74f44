import type { BackendChoice } from '@relp/core';
import type { WasmPaths } from '../runtime/backend.js';
import type { ShownError } from '../runtime/errors.js';
import type { ProgressEvent, RunOutput, RunRequest, WorkerRequest, WorkerResponse } from './protocol.js';

/** A failed run, with the worker's classified error. */
export class WorkerRunError extends Error {
  override readonly name = 'WorkerRunError';
  constructor(readonly shown: ShownError) {
    super(shown.message);
  }
}

interface Pending {
  resolve(o: RunOutput): void;
  reject(e: Error): void;
  onProgress?: (p: ProgressEvent) => void;
  onBackend?: (c: BackendChoice) => void;
}

/** The main thread's side of the relp worker: promise-returning calls, progress and backend callbacks. */
export class RelpWorkerClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly worker: Worker) {
    worker.addEventListener('message', (ev: MessageEvent<WorkerResponse>) => this.onMessage(ev.data));
    worker.addEventListener('error', (ev) => {
      const err = new WorkerRunError({
        code: 'INTERNAL',
        title: 'The worker failed',
        message: ev.message || 'worker error',
      });
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    });
  }

  private onMessage(msg: WorkerResponse): void {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'progress') p.onProgress?.(msg.progress);
    else if (msg.type === 'backend') p.onBackend?.(msg.choice);
    else {
      this.pending.delete(msg.id);
      if (msg.type === 'result') p.resolve(msg.output);
      else p.reject(new WorkerRunError(msg.error));
    }
  }

  private send(msg: WorkerRequest, p: Pending): void {
    this.pending.set(msg.id, p);
    this.worker.postMessage(msg);
  }

  /** Selects the backend in the worker (WebGPU → WASM → CPU, or the one requested) and says which and why. */
  selectBackend(requested = 'auto', wasmPaths?: WasmPaths): Promise<BackendChoice> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      let choice: BackendChoice | undefined;
      this.send(
        { type: 'backend', id, requested, ...(wasmPaths === undefined ? {} : { wasmPaths }) },
        {
          resolve: () => (choice ? resolve(choice) : reject(new Error('no backend reported'))),
          reject,
          onBackend: (c) => {
            choice = c;
          },
        },
      );
    });
  }

  /** Runs a request; `cancel()` on the returned handle aborts it between blocks. */
  run(
    request: RunRequest,
    callbacks: { onProgress?: (p: ProgressEvent) => void; onBackend?: (c: BackendChoice) => void } = {},
  ): { result: Promise<RunOutput>; cancel(): void } {
    const id = this.nextId++;
    const result = new Promise<RunOutput>((resolve, reject) => {
      this.send({ type: 'run', id, request }, { resolve, reject, ...callbacks });
    });
    return { result, cancel: () => this.worker.postMessage({ type: 'cancel', id } satisfies WorkerRequest) };
  }

  terminate(): void {
    this.worker.terminate();
  }
}
