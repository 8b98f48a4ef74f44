import type { LanguageModel, ModelFamily, WeightMap } from '@relp/core';
import { ErrorCodes, isRelpError, RelpError } from '@relp/core/errors';
import { trackWeightReads, unusedWeightWarnings } from '@relp/core/weight-names';
import {
  type GgufTokenizerMetadata,
  ggufConfig,
  ggufKeyOfConfigField,
  ggufTokenizerMetadata,
  ggufToWeightMap,
  parseGguf,
  readSafetensors,
  readShardedSafetensors,
} from '@relp/weights';
import { FamilyRegistry } from './families.js';
import { joinPath, type LoaderFs } from './fs.js';
import { contentHash, sha256Hex } from './hash.js';
import {
  type ModelRef,
  parseModelRef,
  type ResolvedModelFiles,
  type ResolveOptions,
  resolveModelFiles,
} from './resolve.js';

/** Where a loaded model came from, for reproducibility records. */
export type ModelSource =
  | {
      readonly kind: 'folder';
      readonly path: string;
      readonly contentHash: string;
      readonly files: readonly string[];
    }
  | {
      readonly kind: 'hub';
      readonly id: string;
      readonly revision: string;
      /** The cache folder the files were read from. */
      readonly path: string;
      readonly contentHash: string;
      readonly files: readonly string[];
    }
  | {
      readonly kind: 'gguf';
      readonly path: string;
      readonly contentHash: string;
      readonly files: readonly string[];
    };

export interface LoadModelOptions<T = unknown> extends ResolveOptions {
  readonly fs: LoaderFs;
  /** Families to pick from by config.json's model_type: the caller says which it knows. */
  readonly families: FamilyRegistry | readonly ModelFamily[];
  /** Builds a tokenizer from parsed tokenizer.json; without it no tokenizer is loaded (or downloaded). */
  readonly loadTokenizer?: (tokenizerJson: unknown) => T | Promise<T>;
  /** GGUF files: builds a tokenizer from the file's tokenizer.ggml.* metadata. */
  readonly loadGgufTokenizer?: (metadata: GgufTokenizerMetadata) => T | Promise<T>;
  /**
   * SHA-256 of a weight file's bytes as lowercase hex (the content hash). Default: Web Crypto, whose digest copies
   * its input (a second copy of a gigabyte file); Node's `nodeLoadOptions` gives node:crypto's, which does not.
   */
  readonly sha256?: (bytes: Uint8Array) => string | Promise<string>;
}

export interface LoadedModel<T = unknown> {
  readonly model: LanguageModel;
  /** Undefined when no loadTokenizer was given or the model has no tokenizer.json. */
  readonly tokenizer: T | undefined;
  readonly config: Readonly<Record<string, unknown>>;
  readonly source: ModelSource;
  /** Absent for GGUF files, which are one file. */
  readonly files?: ResolvedModelFiles;
  /** What the user should know about the checkpoint: tensors the model does not use, extra layers. */
  readonly warnings: readonly string[];
}

/** The model, and warnings about checkpoint tensors it did not use (as transformers warns). */
function buildModel(
  family: ModelFamily,
  config: Record<string, unknown>,
  weights: WeightMap,
  where: string,
): { model: LanguageModel; warnings: string[] } {
  try {
    const tracked = trackWeightReads(weights);
    const model = family.fromHfConfig(config, tracked.weights);
    const warnings = unusedWeightWarnings(tracked.unread(), model.dims.nLayers).map((w) => `${where}: ${w}`);
    return { model, warnings };
  } catch (e) {
    if (isRelpError(e)) throw e;
    throw badFile(
      `${where}: the ${family.name} family could not build the model (${e instanceof Error ? e.message : String(e)})`,
      { family: family.name },
      e,
    );
  }
}

/**
 * A GGUF file: the architecture's config and HF-named float32 weights from the file itself (dequantised tensor by
 * tensor as the model builds them, so the load holds the file and the float32 weights once each), the tokenizer
 * from its metadata. The content hash is the file's sha256.
 */
async function loadGguf<T>(
  path: string,
  registry: FamilyRegistry,
  options: LoadModelOptions<T>,
): Promise<LoadedModel<T>> {
  const bytes = await readOrFail(options.fs, path);
  const file = parseGguf(bytes);
  const config = checkConfig(ggufConfig(file), `${path} (GGUF metadata)`);
  const family = pickFamily(config, registry);
  // Hashed before the weights are built: where the hash copies its input (Web Crypto), that copy of the file next
  // to the float32 weights would be the load's peak (the weights are dequantised one by one as they are built).
  const hash = await contentHash([{ name: path, sha256: await (options.sha256 ?? sha256Hex)(bytes) }]);
  let built: ReturnType<typeof buildModel>;
  try {
    built = buildModel(family, config, ggufToWeightMap(file), path);
  } catch (e) {
    throw namingGgufKey(e, path, String(file.metadata.get('general.architecture')?.value));
  }
  const { model, warnings } = built;
  let tokenizer: T | undefined;
  if (options.loadGgufTokenizer !== undefined) {
    try {
      tokenizer = await options.loadGgufTokenizer(ggufTokenizerMetadata(file));
    } catch (e) {
      model.dispose();
      if (isRelpError(e)) throw e;
      throw badFile(
        `${path}: tokenizer metadata: ${e instanceof Error ? e.message : String(e)}`,
        { path },
        e,
      );
    }
  }
  return {
    model,
    tokenizer,
    config,
    source: { kind: 'gguf', path, contentHash: hash, files: [path] },
    warnings,
  };
}

/** A family's error about a config field that a GGUF file's metadata gave names the metadata key and the file. */
function namingGgufKey(e: unknown, path: string, architecture: string): unknown {
  if (!isRelpError(e) || typeof e.details.field !== 'string') return e;
  const key = ggufKeyOfConfigField(architecture, e.details.field);
  if (key === undefined) return e;
  return new RelpError(
    e.code,
    `${path}: GGUF metadata "${key}" (as config field ${e.details.field}): ${e.message}`,
    {
      details: { ...e.details, path, ggufKey: key },
      cause: e,
    },
  );
}

function badFile(message: string, details: Record<string, unknown> = {}, cause?: unknown): RelpError {
  return new RelpError(ErrorCodes.BadModelFile, message, { details, cause });
}

/** The most bytes of JSON read (configs are kilobytes, tokenizer.json tens of megabytes). */
export const MAX_JSON_BYTES = 256 * 2 ** 20;

/** Reads a file; the reader's own errors (not a regular file, too large) as they are, others as BAD_MODEL_FILE. */
async function readOrFail(fs: LoaderFs, path: string, maxBytes?: number): Promise<Uint8Array> {
  try {
    return await fs.readFile(path, maxBytes === undefined ? undefined : { maxBytes });
  } catch (e) {
    if (isRelpError(e)) throw e;
    throw badFile(`cannot read ${path}`, { path }, e);
  }
}

async function readJson(fs: LoaderFs, path: string): Promise<unknown> {
  const bytes = await readOrFail(fs, path, MAX_JSON_BYTES);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw badFile(`${path} is not valid JSON (${e instanceof Error ? e.message : String(e)})`, { path }, e);
  }
}

/** Parses and checks config.json: a JSON object with a string model_type. */
export function checkConfig(
  json: unknown,
  path = 'config.json',
): Record<string, unknown> & { model_type: string } {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw badFile(`${path} is not a JSON object`, { path });
  const config = json as Record<string, unknown>;
  if (typeof config.model_type !== 'string' || config.model_type.length === 0) {
    throw badFile(`${path} has no "model_type" string, so the architecture is unknown`, { path });
  }
  return config as Record<string, unknown> & { model_type: string };
}

/** Picks the family for a config's model_type; UNSUPPORTED with the known types otherwise. */
export function pickFamily(config: { model_type: string }, families: FamilyRegistry): ModelFamily {
  const family = families.forModelType(config.model_type);
  if (family === undefined) {
    const known = families.modelTypes();
    throw new RelpError(
      ErrorCodes.Unsupported,
      `model_type "${config.model_type}" is not supported` +
        (known.length > 0 ? ` (supported: ${known.join(', ')})` : ' (no model families are registered)'),
      { details: { modelType: config.model_type, supported: known } },
    );
  }
  return family;
}

/** Reads the weight files of resolved model files into a WeightMap and computes the content hash. */
export async function readWeights(
  files: ResolvedModelFiles,
  fs: LoaderFs,
  sha256: (bytes: Uint8Array) => string | Promise<string> = sha256Hex,
): Promise<{ weights: WeightMap; contentHash: string; files: string[] }> {
  const read = (name: string, maxBytes?: number) => readOrFail(fs, joinPath(files.folder, name), maxBytes);
  if (files.weights.kind === 'single') {
    const bytes = await read(files.weights.file);
    const weights = readSafetensors(bytes, { source: joinPath(files.folder, files.weights.file) });
    const hash = await contentHash([{ name: files.weights.file, sha256: await sha256(bytes) }]);
    return { weights, contentHash: hash, files: [files.weights.file] };
  }
  const indexBytes = await read(files.weights.index, MAX_JSON_BYTES);
  const shards = new Map<string, Uint8Array>();
  const hashes: { name: string; sha256: string }[] = [];
  for (const s of files.weights.shards) {
    const bytes = await read(s);
    shards.set(s, bytes);
    hashes.push({ name: s, sha256: await sha256(bytes) });
  }
  const weights = readShardedSafetensors(indexBytes, shards);
  return { weights, contentHash: await contentHash(hashes), files: [...files.weights.shards] };
}

/**
 * Loads a model: resolves the reference (local folder, or hub id through the cache), reads config.json, picks the
 * family by model_type, reads the safetensors weights, builds the model, and (with loadTokenizer) the tokenizer.
 * Errors: BAD_INPUT (reference), NOT_AVAILABLE (offline without cache, HTTP failures), BAD_MODEL_FILE (malformed
 * files, or a family that rejects the config or weights), UNSUPPORTED (unknown model_type).
 */
export async function loadModel<T = unknown>(
  ref: string | ModelRef,
  options: LoadModelOptions<T>,
): Promise<LoadedModel<T>> {
  const registry =
    options.families instanceof FamilyRegistry ? options.families : new FamilyRegistry(options.families);
  const parsed = typeof ref === 'string' ? await parseModelRef(ref, options.fs, options.revision) : ref;
  if (parsed.kind === 'gguf') return loadGguf(parsed.path, registry, options);
  const wantTokenizer = options.loadTokenizer !== undefined;
  const files = await resolveModelFiles(parsed, {
    ...options,
    tokenizer: options.tokenizer ?? wantTokenizer,
  });
  const configPath = joinPath(files.folder, files.config);
  const config = checkConfig(await readJson(options.fs, configPath), configPath);
  const family = pickFamily(config, registry);
  const {
    weights,
    contentHash: hash,
    files: weightFiles,
  } = await readWeights(files, options.fs, options.sha256);
  const { model, warnings } = buildModel(family, config, weights, files.folder);
  let tokenizer: T | undefined;
  if (options.loadTokenizer !== undefined && files.tokenizer !== undefined) {
    const tokPath = joinPath(files.folder, files.tokenizer);
    const json = await readJson(options.fs, tokPath);
    try {
      tokenizer = await options.loadTokenizer(json);
    } catch (e) {
      model.dispose();
      if (isRelpError(e)) throw e;
      throw badFile(`${tokPath}: ${e instanceof Error ? e.message : String(e)}`, { path: tokPath }, e);
    }
  }
  const allFiles = [
    files.config,
    ...weightFiles,
    ...(files.weights.kind === 'sharded' ? [files.weights.index] : []),
  ];
  if (files.tokenizer !== undefined) allFiles.push(files.tokenizer);
  const source: ModelSource =
    files.ref.kind !== 'hub'
      ? { kind: 'folder', path: files.ref.path, contentHash: hash, files: allFiles }
      : {
          kind: 'hub',
          id: files.ref.id,
          revision: files.ref.revision,
          path: files.folder,
          contentHash: hash,
          files: allFiles,
        };
  return { model, tokenizer, config, source, files, warnings };
}
