import type { HostTensor, WeightMap } from '@relp/core';
import { asBytes, badFile } from '../errors.js';
import { SafetensorsFile, type SafetensorsReadOptions } from './reader.js';

/** The parsed `model.safetensors.index.json`: which shard file holds each tensor. */
export interface SafetensorsIndex {
  readonly weightMap: Readonly<Record<string, string>>;
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Distinct shard file names, in first-mention order. */
  readonly shards: readonly string[];
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A shard name must be a relative file name inside the model folder: no absolute paths, no `..`, no backslashes,
 * no empty segments (a hostile index must not make the loader read or write outside the folder).
 */
export function isSafeRelativeFileName(name: string): boolean {
  if (name.length === 0 || name.length > 1024) return false;
  if (name.startsWith('/') || name.includes('\\') || name.includes('\0') || /^[A-Za-z]:/.test(name))
    return false;
  return name.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

/**
 * Parses an index (JSON text, its bytes, or the already-parsed value). Throws RelpError BAD_MODEL_FILE when it is not
 * `{ "weight_map": { name: file, ... }, "metadata"?: {...} }` or names an unsafe file.
 */
export function parseSafetensorsIndex(
  input: string | Uint8Array | ArrayBuffer | unknown,
  source = 'model.safetensors.index.json',
): SafetensorsIndex {
  let json: unknown = input;
  if (typeof input === 'string' || input instanceof Uint8Array || input instanceof ArrayBuffer) {
    let text: string;
    try {
      text =
        typeof input === 'string' ? input : new TextDecoder('utf-8', { fatal: true }).decode(asBytes(input));
      json = JSON.parse(text);
    } catch (e) {
      throw badFile(`${source} is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  if (!isPlainObject(json)) throw badFile(`${source} is not a JSON object`);
  const wm = json.weight_map;
  if (!isPlainObject(wm)) throw badFile(`${source} has no "weight_map" object`);
  const shards: string[] = [];
  const seen = new Set<string>();
  for (const [name, file] of Object.entries(wm)) {
    if (typeof file !== 'string')
      throw badFile(`${source}: weight_map["${name}"] is not a file name`, { name });
    if (!isSafeRelativeFileName(file))
      throw badFile(`${source}: shard name ${JSON.stringify(file)} is not a safe relative file name`, {
        file,
      });
    if (!seen.has(file)) {
      seen.add(file);
      shards.push(file);
    }
  }
  const metadata = json.metadata === undefined ? {} : json.metadata;
  if (!isPlainObject(metadata)) throw badFile(`${source}: "metadata" is not an object`);
  return { weightMap: wm as Record<string, string>, metadata, shards };
}

/** A WeightMap over several safetensors shards, checked against the index. */
export class ShardedSafetensors implements WeightMap {
  readonly index: SafetensorsIndex;
  readonly files: ReadonlyMap<string, SafetensorsFile>;

  private constructor(index: SafetensorsIndex, files: Map<string, SafetensorsFile>) {
    this.index = index;
    this.files = files;
  }

  /**
   * `shards` maps each shard file name of the index to its bytes. Every shard is parsed (headers only); every
   * tensor named in the index must be in its shard, and no tensor may be in two shards. Tensors present in a
   * shard but absent from the index are refused too (the index would be lying about the checkpoint).
   */
  static from(
    index: SafetensorsIndex | string | Uint8Array | ArrayBuffer,
    shards:
      | ReadonlyMap<string, Uint8Array | ArrayBuffer>
      | Readonly<Record<string, Uint8Array | ArrayBuffer>>,
    options: SafetensorsReadOptions = {},
  ): ShardedSafetensors {
    const idx =
      typeof index === 'object' && index !== null && 'weightMap' in index
        ? index
        : parseSafetensorsIndex(index);
    const get = (f: string) =>
      shards instanceof Map
        ? shards.get(f)
        : Object.hasOwn(shards, f)
          ? (shards as Record<string, Uint8Array | ArrayBuffer>)[f]
          : undefined;
    const files = new Map<string, SafetensorsFile>();
    for (const f of idx.shards) {
      const bytes = get(f);
      if (bytes === undefined) throw badFile(`shard ${f} named by the index was not provided`, { file: f });
      files.set(f, SafetensorsFile.from(bytes, { ...options, source: f }));
    }
    const owner = new Map<string, string>();
    for (const [f, file] of files) {
      for (const name of file.names()) {
        const prev = owner.get(name);
        if (prev !== undefined)
          throw badFile(`tensor "${name}" is in two shards: ${prev} and ${f}`, { name });
        owner.set(name, f);
        const listed = Object.hasOwn(idx.weightMap, name) ? idx.weightMap[name] : undefined;
        if (listed !== f) {
          throw badFile(
            `tensor "${name}" is in shard ${f} but the index says ${listed ?? 'nothing about it'}`,
            { name },
          );
        }
      }
    }
    for (const [name, f] of Object.entries(idx.weightMap)) {
      if (owner.get(name) !== f)
        throw badFile(`tensor "${name}" is listed in the index for ${f} but that shard lacks it`, {
          name,
          file: f,
        });
    }
    return new ShardedSafetensors(idx, files);
  }

  private fileOf(name: string): SafetensorsFile | undefined {
    const f = Object.hasOwn(this.index.weightMap, name) ? this.index.weightMap[name] : undefined;
    return f === undefined ? undefined : this.files.get(f);
  }

  names(): string[] {
    return Object.keys(this.index.weightMap);
  }

  has(name: string): boolean {
    return this.fileOf(name) !== undefined;
  }

  get(name: string): HostTensor | undefined {
    return this.fileOf(name)?.get(name);
  }

  raw(name: string) {
    return this.fileOf(name)?.raw(name);
  }
}

/** Reads a sharded checkpoint (see ShardedSafetensors.from). */
export function readShardedSafetensors(
  index: SafetensorsIndex | string | Uint8Array | ArrayBuffer,
  shards: ReadonlyMap<string, Uint8Array | ArrayBuffer> | Readonly<Record<string, Uint8Array | ArrayBuffer>>,
  options: SafetensorsReadOptions = {},
): ShardedSafetensors {
  return ShardedSafetensors.from(index, shards, options);
}
