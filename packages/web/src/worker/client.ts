import type { BrowserBackendChoice, WasmPaths } from '../runtime/backend.js';
import type { ShownError } from '../runtime/errors.js';
import type {
  LoadRequest,
  ModelSummary,
  ProgressEvent,
  RunOutput,
  RunRequest,
  WorkerRequest,
  WorkerResponse,
} from './protocol.js';

/** A failed run, with the worker's classified error. */
export class WorkerRunError extends Error {
  override readonly name = 'WorkerRunError';
  constructor(readonly shown: ShownError) {
    super(shown.message);
  }
}

interface Pending {
  resolve(o: unknown): void;
  reject(e: Error): void;
  onProgress?: (p: ProgressEvent) => void;
  onBackend?: (c: BrowserBackendChoice) => void;
}

/** What a cancelled call rejects with. */
export const CANCELLED: ShownError = {
  code: 'ABORTED',
  title: 'Cancelled',
  message:
    'cancelled: the run was stopped; the model is loaded again for the next run (from the browser cache)',
};

/**
 * The main thread's side of the relp worker: promise-returning calls, progress and backend callbacks.
 *
 * Given a function that makes the worker, `cancel()` stops a run at once, even mid-computation: a computing
 * worker reads no messages until its run ends, so the client terminates it, rejects what was pending with
 * ABORTED, and starts a fresh worker (`onRestart` lets the page warm it up, e.g. with `preload`). Given a
 * Worker, `cancel()` can only ask the worker, which hears it between downloads and file reads.
 */
export class RelpWorkerClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private worker: Worker;
  /** Called with the fresh worker after a cancel restarted it. */
  onRestart?: () => void;

  constructor(private readonly source: Worker | (() => Worker)) {
    this.worker = this.attach(typeof source === 'function' ? source() : source);
  }

  private attach(worker: Worker): Worker {
    worker.addEventListener('message', (ev: MessageEvent<WorkerResponse>) => this.onMessage(ev.data));
    worker.addEventListener('error', (ev) => {
      this.rejectAll(
        new WorkerRunError({
          code: 'INTERNAL',
          title: 'The worker failed',
          message: ev.message || 'worker error',
        }),
      );
    });
    return worker;
  }

  private rejectAll(err: Error): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
  }

  private onMessage(msg: WorkerResponse): void {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'progress') p.onProgress?.(msg.progress);
    else if (msg.type === 'backend') p.onBackend?.(msg.choice);
    else {
      this.pending.delete(msg.id);
      if (msg.type === 'result') p.resolve(msg.output);
      else if (msg.type === 'loaded') p.resolve(msg.model);
      else p.reject(new WorkerRunError(msg.error));
    }
  }

  private send(msg: WorkerRequest, p: Pending): void {
    this.pending.set(msg.id, p);
    this.worker.postMessage(msg);
  }

  /** Selects the backend in the worker (WebGPU → WASM → CPU, or the one requested) and says which and why. */
  selectBackend(requested = 'auto', wasmPaths?: WasmPaths): Promise<BrowserBackendChoice> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      let choice: BrowserBackendChoice | undefined;
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

  /** Loads a model (and its backend) without running anything, so that the next run starts at once. */
  preload(
    request: LoadRequest,
    callbacks: {
      onProgress?: (p: ProgressEvent) => void;
      onBackend?: (c: BrowserBackendChoice) => void;
    } = {},
  ): Promise<ModelSummary> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.send(
        { type: 'load', id, request },
        { resolve: (m) => resolve(m as ModelSummary), reject, ...callbacks },
      );
    });
  }

  /** Runs a request; `cancel()` on the returned handle stops it (see the class comment). */
  run(
    request: RunRequest,
    callbacks: {
      onProgress?: (p: ProgressEvent) => void;
      onBackend?: (c: BrowserBackendChoice) => void;
    } = {},
  ): { result: Promise<RunOutput>; cancel(): void } {
    const id = this.nextId++;
    const result = new Promise<RunOutput>((resolve, reject) => {
      this.send(
        { type: 'run', id, request },
        { resolve: (o) => resolve(o as RunOutput), reject, ...callbacks },
      );
    });
    return { result, cancel: () => this.cancel(id) };
  }

  /** Stops call `id` (a no-op once it has ended). */
  private cancel(id: number): void {
    if (!this.pending.has(id)) return;
    if (typeof this.source !== 'function') {
      this.worker.postMessage({ type: 'cancel', id } satisfies WorkerRequest);
      return;
    }
    this.worker.terminate();
    this.rejectAll(new WorkerRunError(CANCELLED));
    this.worker = this.attach(this.source());
    this.onRestart?.();
  }

  terminate(): void {
    this.worker.terminate();
  }
}
