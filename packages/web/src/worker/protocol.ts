import type { AttributionResult, BackendChoice } from '@relp/core';
import type { CorrelationRow } from '../components/correlation-table.js';
import type { RunMethodsOptions } from '../experiment.js';
import type { WasmPaths } from '../runtime/backend.js';
import type { ShownError } from '../runtime/errors.js';
import type { PickedFile } from '../runtime/fs.js';

/** Which model to load: a hub id (downloaded into the Cache API), or files the user picked. */
export type ModelChoice =
  | {
      readonly kind: 'hub';
      readonly id: string;
      readonly revision?: string;
      /** Default https://huggingface.co; the docs site serves its test model under its own "hub/" folder. */
      readonly endpoint?: string;
    }
  | { readonly kind: 'files'; readonly files: readonly PickedFile[] };

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
  readonly backend: BackendChoice;
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
  | {
      readonly type: 'backend';
      readonly id: number;
      readonly requested?: string;
      readonly wasmPaths?: WasmPaths;
    };

export interface ProgressEvent {
  /** "backend", "download", "load", "tokenize", or a method's phase ("atp: forward", …). */
  readonly stage: string;
  readonly message: string;
  readonly done?: number;
  readonly total?: number;
}

export type WorkerResponse =
  | { readonly type: 'progress'; readonly id: number; readonly progress: ProgressEvent }
  | { readonly type: 'backend'; readonly id: number; readonly choice: BackendChoice }
  | { readonly type: 'result'; readonly id: number; readonly output: RunOutput }
  | { readonly type: 'error'; readonly id: number; readonly error: ShownError };
