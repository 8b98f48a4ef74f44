import { ErrorCodes, isRelpError, RelpError } from '@relp/core/errors';
import { parseSafetensorsIndex } from '@relp/weights';
import { joinPath, type LoaderFs } from './fs.js';
import {
  ensureHubFile,
  type HubOptions,
  hubCacheFolder,
  isHubId,
  isSafeRevision,
  OfflineError,
} from './hub.js';
import { checkSafetensorsSize } from './promised-size.js';

const CONFIG_FILE = 'config.json';
const WEIGHTS_FILE = 'model.safetensors';
const INDEX_FILE = 'model.safetensors.index.json';
const TOKENIZER_FILE = 'tokenizer.json';
/** A shard index names tensors and files: megabytes at most. */
const MAX_INDEX_BYTES = 64 * 2 ** 20;

/** A parsed model reference. */
export type ModelRef =
  | { readonly kind: 'folder'; readonly path: string }
  | { readonly kind: 'hub'; readonly id: string; readonly revision: string }
  | { readonly kind: 'gguf'; readonly path: string };

/** The files of a model, all in one local folder (the user's, or the cache's). */
export interface ResolvedModelFiles {
  readonly ref: ModelRef;
  readonly folder: string;
  /** Paths relative to the folder. */
  readonly config: string;
  readonly weights:
    | { readonly kind: 'single'; readonly file: string }
    | { readonly kind: 'sharded'; readonly index: string; readonly shards: readonly string[] };
  /** Absent when the model has no tokenizer.json (or it was not asked for). */
  readonly tokenizer?: string;
}

export interface ResolveOptions extends Omit<HubOptions, 'cacheDir'> {
  /** Required for hub references. */
  readonly cacheDir?: string;
  /** Default "main"; `id@revision` in the reference takes precedence. */
  readonly revision?: string;
  /** Also fetch tokenizer.json (hub). Default true. */
  readonly tokenizer?: boolean;
}

const looksLikePath = (s: string) =>
  s.startsWith('.') || s.startsWith('/') || s.startsWith('~') || s.includes('\\') || /^[A-Za-z]:/.test(s);

/**
 * Parses a reference: an existing local folder wins; then anything path-like is a folder; then `owner/name`,
 * `name`, optionally with `@revision`, is a hub id. Anything else is BAD_INPUT.
 */
export async function parseModelRef(ref: string, fs: LoaderFs, revision?: string): Promise<ModelRef> {
  const trimmed = ref.trim();
  if (trimmed.length === 0) throw new RelpError(ErrorCodes.BadInput, 'empty model reference');
  const st = await fs.stat(trimmed);
  if (st?.isDirectory) return { kind: 'folder', path: trimmed };
  if (trimmed.toLowerCase().endsWith('.gguf')) {
    if (st === undefined) {
      throw new RelpError(ErrorCodes.NotAvailable, `GGUF file ${trimmed} does not exist`, {
        details: { ref: trimmed },
      });
    }
    return { kind: 'gguf', path: trimmed };
  }
  if (st !== undefined) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `${trimmed} is a file; --model takes a folder with config.json and weights`,
    );
  }
  if (looksLikePath(trimmed)) return { kind: 'folder', path: trimmed };
  const at = trimmed.indexOf('@');
  const id = at < 0 ? trimmed : trimmed.slice(0, at);
  const rev = at < 0 ? (revision ?? 'main') : trimmed.slice(at + 1);
  if (!isHubId(id)) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `"${ref}" is neither a local folder nor a Hugging Face id like openai-community/gpt2`,
      { details: { ref } },
    );
  }
  if (!isSafeRevision(rev))
    throw new RelpError(ErrorCodes.BadInput, `"${rev}" is not a valid revision`, { details: { ref } });
  return { kind: 'hub', id, revision: rev };
}

async function isFile(fs: LoaderFs, path: string): Promise<boolean> {
  const st = await fs.stat(path);
  return st !== undefined && !st.isDirectory;
}

async function readIndexShards(fs: LoaderFs, path: string): Promise<string[]> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(path, { maxBytes: MAX_INDEX_BYTES });
  } catch (e) {
    if (isRelpError(e)) throw e;
    throw new RelpError(ErrorCodes.BadModelFile, `cannot read ${path}`, { cause: e });
  }
  return [...parseSafetensorsIndex(bytes, path).shards];
}

async function resolveFolder(
  ref: { kind: 'folder'; path: string },
  fs: LoaderFs,
  wantTokenizer: boolean,
): Promise<ResolvedModelFiles> {
  const folder = ref.path;
  const st = await fs.stat(folder);
  if (st === undefined || !st.isDirectory) {
    throw new RelpError(ErrorCodes.BadInput, `model folder ${folder} does not exist`, {
      details: { path: folder },
    });
  }
  if (!(await isFile(fs, joinPath(folder, CONFIG_FILE)))) {
    throw new RelpError(
      ErrorCodes.BadModelFile,
      `${folder} has no ${CONFIG_FILE}: not a Hugging Face model folder (expected ${CONFIG_FILE}, ${WEIGHTS_FILE} or ${INDEX_FILE}, ${TOKENIZER_FILE})`,
      { details: { path: folder } },
    );
  }
  let weights: ResolvedModelFiles['weights'];
  if (await isFile(fs, joinPath(folder, WEIGHTS_FILE))) weights = { kind: 'single', file: WEIGHTS_FILE };
  else if (await isFile(fs, joinPath(folder, INDEX_FILE))) {
    const shards = await readIndexShards(fs, joinPath(folder, INDEX_FILE));
    const missing: string[] = [];
    for (const s of shards) if (!(await isFile(fs, joinPath(folder, s)))) missing.push(s);
    if (missing.length > 0) {
      throw new RelpError(
        ErrorCodes.BadModelFile,
        `${folder}: shards named by ${INDEX_FILE} are missing: ${missing.join(', ')}`,
        {
          details: { missing },
        },
      );
    }
    weights = { kind: 'sharded', index: INDEX_FILE, shards };
  } else {
    throw new RelpError(
      ErrorCodes.BadModelFile,
      `${folder} has no safetensors weights (${WEIGHTS_FILE} or ${INDEX_FILE}); convert .bin checkpoints to safetensors first`,
      { details: { path: folder } },
    );
  }
  const tok =
    wantTokenizer && (await isFile(fs, joinPath(folder, TOKENIZER_FILE))) ? TOKENIZER_FILE : undefined;
  return { ref, folder, config: CONFIG_FILE, weights, ...(tok ? { tokenizer: tok } : {}) };
}

async function resolveHub(
  ref: { kind: 'hub'; id: string; revision: string },
  options: ResolveOptions & { cacheDir: string },
  wantTokenizer: boolean,
): Promise<ResolvedModelFiles> {
  const { id, revision } = ref;
  const folder = hubCacheFolder(options.cacheDir, id, revision);
  const missing: string[] = [];
  let offlineCause: unknown;
  const get = async (file: string): Promise<string | undefined | null> => {
    try {
      // Once the hub proved unreachable, the other files come from the cache or not at all (one timeout, not four).
      const { fetch, ...cacheOnly } = options;
      return await ensureHubFile(id, revision, file, offlineCause === undefined ? options : cacheOnly);
    } catch (e) {
      if (!(e instanceof OfflineError)) throw e;
      offlineCause ??= e;
      return null; // unreachable: neither present nor known absent
    }
  };
  const config = await get(CONFIG_FILE);
  if (config === null) missing.push(CONFIG_FILE);
  else if (config === undefined) {
    throw new RelpError(
      ErrorCodes.NotAvailable,
      `${id}@${revision} has no ${CONFIG_FILE} (is the id right?)`,
      {
        details: { id, revision },
      },
    );
  }
  let weights: ResolvedModelFiles['weights'] | undefined;
  const single = await get(WEIGHTS_FILE);
  if (typeof single === 'string') weights = { kind: 'single', file: WEIGHTS_FILE };
  else {
    const index = await get(INDEX_FILE);
    if (typeof index === 'string') {
      const shards = await readIndexShards(options.fs, index);
      const shardMissing: string[] = [];
      for (const s of shards) {
        const p = await get(s);
        if (p === null) shardMissing.push(s);
        else if (p === undefined) {
          throw new RelpError(
            ErrorCodes.BadModelFile,
            `${id}@${revision}: shard ${s} named by ${INDEX_FILE} does not exist`,
            {
              details: { file: s },
            },
          );
        }
      }
      missing.push(...shardMissing);
      weights = { kind: 'sharded', index: INDEX_FILE, shards };
    } else if (single === null || index === null) {
      missing.push(`${WEIGHTS_FILE} (or ${INDEX_FILE} and its shards)`);
    } else {
      throw new RelpError(
        ErrorCodes.NotAvailable,
        `${id}@${revision} has no safetensors weights (${WEIGHTS_FILE} or ${INDEX_FILE}); only safetensors checkpoints are supported`,
        { details: { id, revision } },
      );
    }
  }
  let tokenizer: string | undefined;
  if (wantTokenizer) {
    const t = await get(TOKENIZER_FILE);
    if (t === null) missing.push(TOKENIZER_FILE);
    else if (t !== undefined) tokenizer = TOKENIZER_FILE;
  }
  if (missing.length > 0 || weights === undefined) {
    const why =
      options.fetch === undefined
        ? 'offline'
        : `the hub cannot be reached (${offlineCause instanceof Error ? offlineCause.message : String(offlineCause)})`;
    throw new RelpError(
      ErrorCodes.NotAvailable,
      `${id}@${revision}: ${why}, and the cache (${folder}) lacks ${missing.join(', ')}. ` +
        `Download the model elsewhere and pass --model PATH to a local folder with ${CONFIG_FILE}, ${WEIGHTS_FILE} and ${TOKENIZER_FILE}.`,
      { details: { id, revision, missing, cacheFolder: folder }, cause: offlineCause },
    );
  }
  return { ref, folder, config: CONFIG_FILE, weights, ...(tokenizer ? { tokenizer } : {}) };
}

/**
 * Resolves a reference to local files, downloading hub files into the cache when needed, and checks that each
 * weight file has the size its header describes (BAD_MODEL_FILE otherwise, before anything reads it whole).
 */
export async function resolveModelFiles(
  ref: string | ModelRef,
  options: ResolveOptions,
): Promise<ResolvedModelFiles> {
  const parsed = typeof ref === 'string' ? await parseModelRef(ref, options.fs, options.revision) : ref;
  const wantTokenizer = options.tokenizer ?? true;
  if (parsed.kind === 'gguf') {
    throw new RelpError(ErrorCodes.Internal, 'GGUF files are read whole by loadModel, not resolved to files');
  }
  let files: ResolvedModelFiles;
  if (parsed.kind === 'folder') files = await resolveFolder(parsed, options.fs, wantTokenizer);
  else if (options.cacheDir === undefined) {
    throw new RelpError(ErrorCodes.BadInput, `a cache folder is needed to load ${parsed.id} from the hub`);
  } else files = await resolveHub(parsed, { ...options, cacheDir: options.cacheDir }, wantTokenizer);
  const weights = files.weights.kind === 'single' ? [files.weights.file] : files.weights.shards;
  for (const w of weights) await checkSafetensorsSize(options.fs, joinPath(files.folder, w));
  return files;
}
