import { type AttributionResult, type LanguageModel, makePairBatch, type SiteName } from '@relp/core';
import { badInput, isRelpError, RelpError } from '@relp/core/errors';
import { type DownloadProgress, ensureHubFile, type LoaderFs, loadModel, OfflineError } from '@relp/loader';
import { compareMethods } from '@relp/methods';
import { MODEL_FAMILIES } from '@relp/models';
import {
  buildTask,
  checkPairs,
  describeDropped,
  type PairRecord,
  parsePairsJsonl,
  type TextPair,
  tokenLabels,
} from '@relp/tasks';
import { Tokenizer, tokenizerFromGgufMetadata } from '@relp/tokenizer';
import type { CorrelationRow } from './components/correlation-table.js';
import { DEFAULT_SITES } from './defaults.js';
import { CACHE_DIR, cacheStorageFs, pickedFilesFs } from './runtime/fs.js';
import type {
  DataChoice,
  HubFileChoice,
  ModelChoice,
  ModelSummary,
  ProgressEvent,
} from './worker/protocol.js';

export interface LoadedWebModel {
  readonly model: LanguageModel;
  readonly tokenizer: Tokenizer | undefined;
  readonly summary: ModelSummary;
}

/** A stable key for a model choice (to reuse a loaded model across runs). */
export function modelKey(choice: ModelChoice): string {
  if (choice.kind === 'hub') return `hub:${choice.endpoint ?? ''}:${choice.id}@${choice.revision ?? 'main'}`;
  if (choice.kind === 'hub-file')
    return `hub-file:${choice.endpoint ?? ''}:${choice.repo}/${choice.file}@${choice.revision}`;
  return `files:${choice.files.map((f) => `${f.webkitRelativePath || f.name}:${f.size}:${f.lastModified ?? ''}`).join(',')}`;
}

/** Where the tokenizer came from, for the page. */
function tokenizerSource(loaded: { tokenizer: unknown; source: { kind: string } }): string {
  if (loaded.tokenizer === undefined) return 'none';
  return loaded.source.kind === 'gguf' ? 'GGUF metadata (tokenizer.ggml.*)' : 'tokenizer.json';
}

/**
 * The loader speaks to CLI users (flags, environment variables); in the page the same advice names the page's
 * controls. Returns the error unchanged when it says nothing of the kind.
 */
export function inPageWords(e: unknown): unknown {
  if (!isRelpError(e)) return e;
  const message = e.message
    .replace(
      /Download the model elsewhere and pass --model PATH to a local folder with ([^.]+)\./,
      'Download the model elsewhere and pick its folder (with $1) under Model → Source → "a Hugging Face folder on this computer…".',
    )
    .replace(
      /set a token \(HF_TOKEN\)/,
      'the demo sends no token: download the model elsewhere (after accepting its licence) and pick its folder under Model → Source',
    )
    .replace(/--model takes a folder/, 'pick a folder');
  if (message === e.message) return e;
  return new RelpError(e.code, message, { details: { ...e.details }, cause: e });
}

/** The picked files' errors name the file or folder the user picked (the loader only knows its /picked path). */
function namePicked(e: unknown, what: string): unknown {
  if (!isRelpError(e)) return e;
  const message = e.message.replaceAll('/picked/', '');
  if (message === e.message && message.includes(what)) return e;
  return new RelpError(e.code, message.includes(what) ? message : `${what}: ${message}`, {
    details: { ...e.details },
    cause: e,
  });
}

/**
 * Loads a model in the browser: a hub id through @relp/loader into the Cache API (progress per file, reused on
 * the next visit), or picked files read in place: a Hugging Face folder (config.json, safetensors weights,
 * tokenizer.json) or one GGUF file, whose config and tokenizer come from its metadata (`tokenizer.ggml.*`) and
 * whose weights are dequantised to float32.
 */
export async function loadWebModel(
  choice: ModelChoice,
  options: {
    readonly onProgress?: (p: ProgressEvent) => void;
    readonly signal?: AbortSignal;
    readonly fs?: LoaderFs;
  } = {},
): Promise<LoadedWebModel> {
  const onDownload = (p: DownloadProgress) =>
    options.onProgress?.({
      stage: 'download',
      message: p.cached ? `${p.file} (cached)` : `downloading ${p.file}`,
      done: p.bytesDone,
      ...(p.bytesTotal === undefined ? {} : { total: p.bytesTotal }),
    });
  const common = {
    families: MODEL_FAMILIES,
    loadTokenizer: (json: unknown) => Tokenizer.fromTokenizerJson(json),
    loadGgufTokenizer: (meta: { raw: Readonly<Record<string, unknown>> }) =>
      tokenizerFromGgufMetadata(meta.raw as Record<string, unknown>),
    onProgress: onDownload,
    ...(options.signal ? { signal: options.signal } : {}),
  };
  let loaded: Awaited<ReturnType<typeof loadModel<Tokenizer>>>;
  let source: string;
  const fetch = (url: string, init?: unknown) => globalThis.fetch(url, init as RequestInit);
  if (choice.kind === 'hub') {
    const fs = options.fs ?? (await cacheStorageFs());
    const ref = `${choice.id}@${choice.revision ?? 'main'}`;
    try {
      loaded = await loadModel<Tokenizer>(ref, {
        ...common,
        fs,
        fetch,
        cacheDir: CACHE_DIR,
        ...(choice.endpoint ? { endpoint: choice.endpoint } : {}),
      });
    } catch (e) {
      throw inPageWords(e);
    }
    source = `hub ${ref}${choice.endpoint ? ` from ${choice.endpoint}` : ''}`;
  } else if (choice.kind === 'hub-file') {
    loaded = await loadHubFile(choice, common, options.fs ?? (await cacheStorageFs()), fetch);
    source = `hub ${choice.repo}/${choice.file}${choice.endpoint ? ` from ${choice.endpoint}` : ''}`;
  } else {
    const picked = pickedFilesFs(choice.files);
    const what = picked.ref.replace(/^\/picked\/?/, '') || 'the picked files';
    const st = await picked.fs.stat(picked.ref);
    if (st && !st.isDirectory && !picked.ref.toLowerCase().endsWith('.gguf')) {
      throw badInput(
        `${what} is neither a GGUF file (its name must end in .gguf) nor a folder with config.json: pick a .gguf file, or a Hugging Face model folder`,
      );
    }
    const gguf = st !== undefined && !st.isDirectory;
    options.onProgress?.({
      stage: 'load',
      message: gguf
        ? `reading ${what} (${(st.size / 1e6).toFixed(1)} MB)`
        : `reading ${picked.names.length} picked file(s)`,
    });
    try {
      loaded = await loadModel<Tokenizer>(picked.ref, { ...common, fs: picked.fs });
    } catch (e) {
      throw namePicked(e, what);
    }
    source = gguf ? `GGUF file ${what}` : `local folder ${what}`;
  }
  const m = loaded.model;
  return {
    model: m,
    tokenizer: loaded.tokenizer,
    summary: {
      architecture: m.architecture,
      nLayers: m.dims.nLayers,
      dModel: m.dims.dModel,
      vocabSize: m.dims.vocabSize,
      source,
      tokenizer: tokenizerSource(loaded),
      contentHash: loaded.source.contentHash,
    },
  };
}

/**
 * One GGUF file of a hub repository: downloaded into the cache (progress per chunk, resumed when interrupted,
 * reused on the next visit), then loaded from it. A pinned size or SHA-256 that the cached file does not match
 * removes it (a mirror serving other bytes, a damaged cache entry) and says so.
 */
async function loadHubFile(
  choice: HubFileChoice,
  common: Omit<Parameters<typeof loadModel<Tokenizer>>[1], 'fs'>,
  fs: LoaderFs,
  fetch: (url: string, init?: unknown) => Promise<Response>,
): Promise<Awaited<ReturnType<typeof loadModel<Tokenizer>>>> {
  const what = `${choice.repo}/${choice.file}`;
  let path: string | undefined;
  try {
    path = await ensureHubFile(choice.repo, choice.revision, choice.file, {
      fs,
      fetch,
      cacheDir: CACHE_DIR,
      ...(choice.endpoint ? { endpoint: choice.endpoint } : {}),
      ...(common.onProgress ? { onProgress: common.onProgress } : {}),
      ...(common.signal ? { signal: common.signal } : {}),
    });
  } catch (e) {
    if (e instanceof OfflineError) {
      throw new RelpError('NOT_AVAILABLE', `${what}: the hub cannot be reached (${e.message})`, { cause: e });
    }
    throw inPageWords(e);
  }
  if (path === undefined) {
    throw new RelpError(
      'NOT_AVAILABLE',
      `${what} does not exist at ${choice.endpoint ?? 'https://huggingface.co'} (HTTP 404)`,
    );
  }
  const size = (await fs.stat(path))?.size;
  if (choice.size !== undefined && size !== choice.size) {
    await fs.remove(path);
    throw new RelpError(
      'BAD_MODEL_FILE',
      `${what}: the downloaded file has ${size} bytes, expected ${choice.size}; it was removed from the cache`,
    );
  }
  const loaded = await loadModel<Tokenizer>(path, { ...common, fs });
  if (choice.sha256 !== undefined && loaded.source.contentHash !== `sha256:${choice.sha256}`) {
    loaded.model.dispose();
    await fs.remove(path);
    throw new RelpError(
      'BAD_MODEL_FILE',
      `${what}: SHA-256 ${loaded.source.contentHash} differs from the expected sha256:${choice.sha256}; it was removed from the cache`,
    );
  }
  return loaded;
}

/** Typed pairs: JSONL (the CLI's pairs.jsonl) or one "clean | corrupt | answer | wrong" per line. */
export function parseTypedPairs(text: string): TextPair[] | PairRecord[] {
  const body = text.trim();
  if (body === '') throw badInput('no prompt pairs typed');
  if (body.startsWith('{')) return parsePairsJsonl(body, 'typed pairs');
  return body
    .split(/\r?\n/)
    .map((l, i) => [l, i + 1] as const)
    .filter(([l]) => l.trim() !== '')
    .map(([line, n]) => {
      const parts = line.split('|');
      if (parts.length !== 4) {
        throw badInput(
          `line ${n}: expected "clean | corrupt | answer | wrong" (4 fields separated by |), got ${parts.length}`,
        );
      }
      const [clean, corrupt, answer, wrong] = parts as [string, string, string, string];
      const word = (s: string) => {
        const t = s.trim();
        return /^[\p{L}\p{N}]/u.test(t) ? ` ${t}` : t;
      };
      return { clean: clean.trim(), corrupt: corrupt.trim(), answer: word(answer), wrong: word(wrong) };
    });
}

export interface PreparedData {
  readonly pairs: { clean: number[]; corrupt: number[]; answer: number; wrong: number }[];
  readonly tokens: string[];
  readonly droppedNote: string;
  readonly prompts: { clean: string; corrupt: string; answer: string; wrong: string }[];
}

/** Builds or parses the pairs and tokenises them as the CLI does (BOS prepended when the tokenizer has one). */
export function prepareData(
  data: DataChoice,
  model: LanguageModel,
  tokenizer: Tokenizer | undefined,
): PreparedData {
  const input =
    data.kind === 'task'
      ? buildTask(data.task, {
          ...(data.n === undefined ? {} : { n: data.n }),
          ...(data.seed === undefined ? {} : { seed: data.seed }),
          ...(data.corruption === undefined ? {} : { corruption: data.corruption }),
        })
      : parseTypedPairs(data.text);
  const hasText = input.some((x) => !('kind' in x) || x.kind === 'text');
  const checked = checkPairs(input, tokenizer, {
    prependBos: hasText && tokenizer?.bosId !== undefined,
    contextLength: model.dims.contextLength,
    vocabSize: model.dims.vocabSize,
    what: data.kind === 'task' ? `task ${data.task}` : 'the typed pairs',
  });
  const pairs = checked.pairs.map((p) => ({
    clean: [...p.clean],
    corrupt: [...p.corrupt],
    answer: p.answer,
    wrong: p.wrong,
  }));
  const prompts = checked.pairs.map((p) =>
    p.source
      ? { clean: p.source.clean, corrupt: p.source.corrupt, answer: p.source.answer, wrong: p.source.wrong }
      : {
          clean: p.clean.join(' '),
          corrupt: p.corrupt.join(' '),
          answer: String(p.answer),
          wrong: String(p.wrong),
        },
  );
  return {
    pairs,
    tokens: tokenLabels(pairs[0]!.clean, tokenizer),
    droppedNote: describeDropped(checked),
    prompts,
  };
}

export interface RunMethodsOptions {
  readonly methods: readonly string[];
  readonly sites?: readonly string[];
  readonly normalize?: boolean;
  readonly igSteps?: number;
  readonly maxBatchRows?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: ProgressEvent) => void;
}

/**
 * Runs each method on one batch (compareMethods: activation patching first, when asked for) and compares every
 * other method with it per site.
 */
export async function runMethods(
  model: LanguageModel,
  pairs: PreparedData['pairs'],
  options: RunMethodsOptions,
): Promise<{ results: AttributionResult[]; correlations: CorrelationRow[] }> {
  const batch = makePairBatch(pairs, { dims: model.dims });
  let started = 0;
  const count = new Set(options.methods).size;
  const method = () => ({ index: started, count });
  const cmp = await compareMethods(model, batch, {
    methods: options.methods,
    reference: 'if-listed',
    sites: (options.sites ?? DEFAULT_SITES) as SiteName[],
    normalize: options.normalize ?? true,
    settings: {
      ...(options.igSteps === undefined ? {} : { igSteps: options.igSteps }),
      ...(options.maxBatchRows === undefined ? {} : { maxBatchRows: options.maxBatchRows }),
    },
    ...(options.signal ? { signal: options.signal } : {}),
    onStart: (m) => {
      started += 1;
      options.onProgress?.({ stage: m.name, message: `${m.name}: starting`, method: method() });
    },
    onProgress: (m, p) =>
      options.onProgress?.({
        stage: m.name,
        message: `${m.name}: ${p.phase}`,
        done: p.done,
        total: p.total,
        method: method(),
      }),
  });
  return {
    results: [...(cmp.reference ? [cmp.reference] : []), ...cmp.results],
    correlations: [...cmp.agreement],
  };
}
