/**
 * The provisioned models in the cache: one folder per alias, <cacheDir>/models/<alias>/, holding the GGUF file
 * and a manifest.json that records its size, SHA-256 and where it came from.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { badInput } from '@relp/core/errors';
import { readRegularText } from '@relp/core/node-files';
import { defaultCacheDir } from '@relp/loader/node';

export interface ManifestSource {
  readonly kind: 'hub' | 'pip' | 'file';
  readonly repo?: string;
  readonly revision?: string;
  readonly url?: string;
  readonly packages?: readonly string[];
}

export interface ModelManifest {
  readonly alias: string;
  readonly file: string;
  readonly size: number;
  readonly sha256: string;
  readonly source: ManifestSource;
  readonly fetchedAt: string;
}

export interface CachedModel {
  readonly alias: string;
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
  readonly source: ManifestSource;
  readonly fetchedAt: string;
  /** False when the file is missing or its size differs from the manifest (checksums are verified by fetch). */
  readonly present: boolean;
}

const MANIFEST = 'manifest.json';

export function modelDir(cacheDir: string, alias: string): string {
  return join(cacheDir, 'models', alias);
}

/** The SHA-256 of a regular file's bytes up to the size it had when opened (BAD_INPUT for anything else). */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw badInput(`${path} is not a regular file`, { path });
    if (st.size === 0) return h.digest('hex');
    const stream = handle.createReadStream({
      highWaterMark: 4 << 20,
      start: 0,
      end: st.size - 1,
      autoClose: false,
    });
    for await (const chunk of stream) h.update(chunk as Buffer);
    return h.digest('hex');
  } finally {
    await handle.close();
  }
}

/** The manifest of a model folder, or undefined when there is none or it is malformed. */
export async function readManifest(dir: string): Promise<ModelManifest | undefined> {
  try {
    const text = await readRegularText(join(dir, MANIFEST), { what: 'manifest', maxBytes: 1 << 20 });
    const m = JSON.parse(text) as ModelManifest;
    if (typeof m.file !== 'string' || typeof m.sha256 !== 'string' || typeof m.size !== 'number')
      return undefined;
    if (m.file.includes('/') || m.file.includes('\\') || m.file.startsWith('.')) return undefined;
    return m;
  } catch {
    return undefined;
  }
}

export async function writeManifest(dir: string, manifest: ModelManifest): Promise<void> {
  await writeFile(join(dir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
}

/** A model folder's manifest and file: `present` when the file is there with the manifest's size. */
export async function cachedFile(
  dir: string,
): Promise<{ manifest: ModelManifest; path: string; present: boolean } | undefined> {
  const manifest = await readManifest(dir);
  if (manifest === undefined) return undefined;
  const path = join(dir, manifest.file);
  const st = await stat(path).catch(() => undefined);
  return { manifest, path, present: st?.isFile() === true && st.size === manifest.size };
}

/** What is cached: one entry per models/<alias>/manifest.json. */
export async function listModels(
  options: { cacheDir?: string; env?: Record<string, string | undefined> } = {},
): Promise<CachedModel[]> {
  const root = join(options.cacheDir ?? defaultCacheDir(options.env), 'models');
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch {
    return [];
  }
  const out: CachedModel[] = [];
  for (const alias of entries.sort()) {
    const c = await cachedFile(join(root, alias));
    if (c === undefined) continue;
    const m = c.manifest;
    out.push({
      alias,
      path: c.path,
      size: m.size,
      sha256: m.sha256,
      source: m.source,
      fetchedAt: m.fetchedAt,
      present: c.present,
    });
  }
  return out;
}
