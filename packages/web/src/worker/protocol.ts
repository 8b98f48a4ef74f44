import type { AttributionResult } from '@relp/core';
import type { CorrelationRow } from '../components/correlation-table.js';
import type { RunMethodsOptions } from '../experiment.js';
import type { BrowserBackendChoice, WasmPaths } from '../runtime/backend.js';
import type { ShownError } from '../runtime/errors.js';
import type { PickedFile } from '../runtime/fs.js';

/**
 * Which model to load: a hub id (a safetensors checkpoint, downloaded into the Cache API), one GGUF file of a hub
 * repository (downloaded into the Cache API), or files the user picked.
 */
export type ModelChoice =
  | {
      readonly kind: 'hub';
      readonly id: string;
      readonly revision?: string;
      /** Default https://huggingface.co; the docs site serves its test model under its own "hub/" folder. */
      readonly endpoint?: string;
    }
  | HubFileChoice
  | { readonly kind: 'files'; readonly files: readonly PickedFile[] };

/** One GGUF file of a hub repository, e.g. SmolLM2-135M as Q4_1; `size` and `sha256` pin the expected bytes. */
export interface HubFileChoice {
  readonly kind: 'hub-file';
  readonly repo: string;
  readonly file: string;
  readonly revision: string;
  /** Default https://huggingface.co (a mirror serves `<endpoint>/<repo>/resolve/<revision>/<file>`). */
  readonly endpoint?: string;
  readonly size?: number;
  readonly sha256?: string;
}

/** The prompt pairs: a task of @relp/tasks, or typed pairs (JSONL, or "clean | corrupt | answer | wrong" lines). */
export type DataChoice =
  | {
      readonly kind: 'task';
      readonly task: string;
      readonly n?: number;
      readonly seed?: number;
      readonly corruption?: string;
    }
  | { readonly kind: 'pairs'; readonly text: string };

/**
 * One run: the model, the data, where to run, and `runMethods`' options (methods, sites, normalisation, IG steps,
 * patched rows per pass) except the abort signal and the progress callback, which stay inside the worker.
 */
export interface RunRequest extends Omit<RunMethodsOptions, 'signal' | 'onProgress'> {
  readonly model: ModelChoice;
  readonly data: DataChoice;
  /** "auto", "webgpu", "wasm" or "cpu". */
  readonly backend?: string;
  readonly wasmPaths?: WasmPaths;
}

/** What loading needs: the model and where to run it. */
export type LoadRequest = Pick<RunRequest, 'model' | 'backend' | 'wasmPaths'>;

export interface ModelSummary {
  readonly architecture: string;
  readonly nLayers: number;
  readonly dModel: number;
  readonly vocabSize: number;
  readonly source: string;
  /** "tokenizer.json", "GGUF metadata (tokenizer.ggml.*)" or "none". */
  readonly tokenizer?: string;
  readonly contentHash?: string;
}

export interface RunOutput {
  readonly backend: BrowserBackendChoice;
  readonly model: ModelSummary;
  readonly tokens: readonly string[];
  readonly nPairs: number;
  readonly droppedNote: string;
  readonly prompts: readonly { clean: string; corrupt: string; answer: string; wrong: string }[];
  readonly results: readonly AttributionResult[];
  /** Agreement of each method with activation patching, when it ran. */
  readonly correlations: readonly CorrelationRow[];
  readonly seconds: number;
}

export type WorkerRequest =
  | { readonly type: 'run'; readonly id: number; readonly request: RunRequest }
  | { readonly type: 'cancel'; readonly id: number }
  /** Selects the backend and loads the model without running anything (a fresh worker's warm-up). */
  | { readonly type: 'load'; readonly id: number; readonly request: LoadRequest }
  | {
      readonly type: 'backend';
      readonly id: number;
      readonly requested?: string;
      readonly wasmPaths?: WasmPaths;
    };

export interface ProgressEvent {
  /** "backend", "download", "load", "tokenize", or a method's name ("atp", …) with `message` its phase. */
  readonly stage: string;
  readonly message: string;
  readonly done?: number;
  readonly total?: number;
  /** During a run: which method of how many (1-based). */
  readonly method?: { readonly index: number; readonly count: number };
}

export type WorkerResponse =
  | { readonly type: 'progress'; readonly id: number; readonly progress: ProgressEvent }
  | { readonly type: 'backend'; readonly id: number; readonly choice: BrowserBackendChoice }
  | { readonly type: 'result'; readonly id: number; readonly output: RunOutput }
  | { readonly type: 'loaded'; readonly id: number; readonly model: ModelSummary }
  | { readonly type: 'error'; readonly id: number; readonly error: ShownError };
