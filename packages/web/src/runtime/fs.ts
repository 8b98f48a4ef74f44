import {
  concatBytes,
  createMemoryFs,
  type FileSink,
  hubCacheFolder,
  joinPath,
  type LoaderFs,
} from '@relp/loader';
import type { HubFileChoice } from '../worker/protocol.js';

/** The loader's cache folder inside `cacheStorageFs()`. */
export const CACHE_DIR = 'relp';

const KEY_ORIGIN = 'https://relp.invalid/';

function enoent(path: string): Error {
  return Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
}

const norm = (p: string) => p.replace(/^\/+/, '').replace(/\/+$/, '');

/**
 * A LoaderFs over the Cache API (persistent across visits, available in windows and workers on https and
 * localhost), for the loader's hub cache: downloads stream into a `.part` entry that is renamed into place
 * when complete, so `loadModel` caches and resumes as in Node. Folders are implicit (a path is a folder when
 * some entry lies below it). Falls back to memory when the Cache API is missing (an insecure origin).
 */
export async function cacheStorageFs(
  cacheName = 'relp-models-v1',
): Promise<LoaderFs & { readonly persistent: boolean }> {
  const storage = (globalThis as { caches?: CacheStorage }).caches;
  let cache: Cache | undefined;
  try {
    cache = storage ? await storage.open(cacheName) : undefined;
  } catch {
    cache = undefined;
  }
  if (!cache) return Object.assign(createMemoryFs(), { persistent: false });
  const c = cache;
  const url = (path: string) => KEY_ORIGIN + norm(path).split('/').map(encodeURIComponent).join('/');
  const pathOf = (u: string) => decodeURIComponent(u.slice(KEY_ORIGIN.length));
  const put = (path: string, data: Uint8Array) =>
    c.put(
      url(path),
      new Response(data as Uint8Array<ArrayBuffer>, {
        headers: { 'content-length': String(data.byteLength) },
      }),
    );
  const read = async (path: string): Promise<Uint8Array | undefined> => {
    const r = await c.match(url(path));
    return r ? new Uint8Array(await r.arrayBuffer()) : undefined;
  };
  return {
    persistent: true,
    async readFile(path) {
      const d = await read(path);
      if (!d) throw enoent(path);
      return d;
    },
    async stat(path) {
      const r = await c.match(url(path));
      if (r) {
        const len = Number(r.headers.get('content-length'));
        return {
          size:
            Number.isFinite(len) && r.headers.has('content-length')
              ? len
              : (await r.arrayBuffer()).byteLength,
          isDirectory: false,
        };
      }
      const prefix = `${norm(path)}/`;
      const keys = await c.keys();
      return keys.some((k) => pathOf(k.url).startsWith(prefix)) ? { size: 0, isDirectory: true } : undefined;
    },
    async writeFile(path, data) {
      await put(path, data);
    },
    async openWrite(path, { truncate }): Promise<FileSink> {
      const chunks: Uint8Array[] = [];
      if (!truncate) {
        const prev = await read(path);
        if (prev) chunks.push(prev);
      }
      // Flush to the cache every 32 MiB so an interrupted download can resume from its .part entry.
      let pending = 0;
      const flush = async () => {
        const all = concatBytes(chunks);
        chunks.length = 0;
        chunks.push(all);
        pending = 0;
        await put(path, all);
      };
      await flush();
      return {
        async write(chunk) {
          chunks.push(chunk.slice());
          pending += chunk.byteLength;
          if (pending >= 32 * 1024 * 1024) await flush();
        },
        async close() {
          await flush();
        },
      };
    },
    async mkdir() {},
    async rename(from, to) {
      const r = await c.match(url(from));
      if (!r) throw enoent(from);
      await c.put(url(to), r);
      await c.delete(url(from));
    },
    async remove(path) {
      await c.delete(url(path));
    },
  };
}

/** Where the loader keeps a hub file in `cacheStorageFs()`. */
export function hubFileCachePath(choice: HubFileChoice): string {
  return joinPath(hubCacheFolder(CACHE_DIR, choice.repo, choice.revision), choice.file);
}

/** Whether a hub file is in this browser's cache already (so a run will not download it). */
export async function isHubFileCached(choice: HubFileChoice, fs?: LoaderFs): Promise<boolean> {
  const st = await (fs ?? (await cacheStorageFs())).stat(hubFileCachePath(choice));
  return st !== undefined && !st.isDirectory;
}

/** A file the user picked: a File (or anything with a name, a relative path and bytes). */
export interface PickedFile {
  readonly name: string;
  /** `webkitRelativePath` of a folder pick ("gpt2/config.json"); empty for single files. */
  readonly webkitRelativePath?: string;
  arrayBuffer(): Promise<ArrayBuffer>;
  readonly size: number;
  /** File.lastModified: a re-picked file that changed is loaded again. */
  readonly lastModified?: number;
}

/**
 * A read-only LoaderFs over files the user picked (an `<input type=file webkitdirectory>` folder, or single
 * files), rooted at `/picked`. Returns the fs and the path to pass to `loadModel`: the folder for a Hugging Face
 * folder pick, the file for a single GGUF file.
 */
export function pickedFilesFs(files: readonly PickedFile[]): { fs: LoaderFs; ref: string; names: string[] } {
  const map = new Map<string, PickedFile>();
  for (const f of files) {
    const rel = f.webkitRelativePath && f.webkitRelativePath.length > 0 ? f.webkitRelativePath : f.name;
    map.set(`/picked/${norm(rel)}`, f);
  }
  const names = [...map.keys()];
  const dirs = new Set<string>();
  for (const n of names)
    for (let d = n.slice(0, n.lastIndexOf('/')); d.length > 0; d = d.slice(0, d.lastIndexOf('/')))
      dirs.add(d);
  const gguf = names.find((n) => n.toLowerCase().endsWith('.gguf'));
  const config = names.filter((n) => n.endsWith('/config.json')).sort((a, b) => a.length - b.length)[0];
  // Without config.json or a GGUF file: the folder all picked files share (the picked folder), so the loader's
  // "no config.json" message names it.
  const top = names.map((n) => n.split('/').slice(0, 3).join('/'));
  const shared =
    names.length > 1 && top.every((t) => t === top[0]) && top[0] !== names[0] ? top[0]! : '/picked';
  const ref = config
    ? config.slice(0, -'/config.json'.length)
    : (gguf ?? (names.length === 1 ? names[0]! : shared));
  const readOnly = async () => {
    throw Object.assign(new Error('picked files are read-only'), { code: 'EROFS' });
  };
  const fs: LoaderFs = {
    async readFile(path) {
      const f = map.get(path);
      if (!f) throw enoent(path);
      return new Uint8Array(await f.arrayBuffer());
    },
    async stat(path) {
      const p = path.replace(/\/+$/, '');
      const f = map.get(p);
      if (f) return { size: f.size, isDirectory: false };
      return dirs.has(p) ? { size: 0, isDirectory: true } : undefined;
    },
    writeFile: readOnly,
    openWrite: readOnly,
    mkdir: readOnly,
    rename: readOnly,
    remove: readOnly,
  };
  return { fs, ref, names };
}
