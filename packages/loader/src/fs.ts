import { badInput } from '@relp/core/errors';

/**
 * The file system the loader needs, as an interface: Node provides it through `@relp/loader/node`, a browser can
 * back it with the Cache API or IndexedDB, tests with `createMemoryFs`. Paths are strings joined with "/".
 */
export interface LoaderFs {
  /**
   * Reads a whole file. Node's refuses anything that is not a regular file (BAD_INPUT) and, with `maxBytes`,
   * files larger than that (BAD_INPUT), before reading a byte.
   */
  readFile(path: string, options?: { readonly maxBytes?: number }): Promise<Uint8Array>;
  /** The first `length` bytes of a file (fewer when it is shorter) and its size; optional, as readFile's checks. */
  readPrefix?(path: string, length: number): Promise<{ bytes: Uint8Array; size: number }>;
  /** Size and kind of a path, or undefined when nothing is there. */
  stat(path: string): Promise<{ readonly size: number; readonly isDirectory: boolean } | undefined>;
  writeFile(path: string, data: Uint8Array): Promise<void>;
  /** Opens a file for streaming writes, appending to what is there or (truncate) starting it anew. */
  openWrite(path: string, options: { readonly truncate: boolean }): Promise<FileSink>;
  /** Creates a folder and its parents; no error when it exists. */
  mkdir(path: string): Promise<void>;
  /** Replaces `to` with `from` (atomically where the platform can). */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file; no error when it does not exist. */
  remove(path: string): Promise<void>;
  /** Removes a folder if it is empty; nothing otherwise (a failed download tidies the folders it made). */
  removeEmptyFolder?(path: string): Promise<void>;
}

export interface FileSink {
  write(chunk: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** Joins path parts with "/", dropping empty parts and duplicate separators (keeps a leading "/"). */
export function joinPath(...parts: string[]): string {
  const nonEmpty = parts.filter((p) => p.length > 0);
  if (nonEmpty.length === 0) return '';
  const joined = nonEmpty.join('/').replace(/\/{2,}/g, '/');
  return joined.length > 1 && joined.endsWith('/') ? joined.slice(0, -1) : joined;
}

/** The folder part of a path ("a/b/c" → "a/b"). */
export function dirname(path: string): string {
  const i = path.lastIndexOf('/');
  if (i < 0) return '.';
  return i === 0 ? '/' : path.slice(0, i);
}

/** The chunks of a streamed write as one array (file sinks buffer their chunks and store them whole). */
export function concatBytes(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** An in-memory LoaderFs (tests, and a fallback where no persistent storage exists). */
export function createMemoryFs(initial: Record<string, Uint8Array | string> = {}): LoaderFs & {
  readonly files: Map<string, Uint8Array>;
} {
  const files = new Map<string, Uint8Array>();
  const dirs = new Set<string>();
  const addDirs = (path: string) => {
    for (let d = dirname(path); d !== '.' && d !== '/' && !dirs.has(d); d = dirname(d)) dirs.add(d);
  };
  const put = (path: string, data: Uint8Array) => {
    files.set(path, data);
    addDirs(path);
  };
  for (const [p, v] of Object.entries(initial))
    put(p, typeof v === 'string' ? new TextEncoder().encode(v) : v);
  const missing = (path: string) => Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
  return {
    files,
    async readFile(path, options) {
      const f = files.get(path);
      if (f === undefined) throw missing(path);
      if (options?.maxBytes !== undefined && f.byteLength > options.maxBytes)
        throw badInput(
          `${path} is ${f.byteLength} bytes, more than the ${options.maxBytes} relp reads for it`,
          {
            path,
          },
        );
      return f.slice();
    },
    async readPrefix(path, length) {
      const f = files.get(path);
      if (f === undefined) throw missing(path);
      return { bytes: f.slice(0, length), size: f.byteLength };
    },
    async stat(path) {
      const f = files.get(path);
      if (f !== undefined) return { size: f.byteLength, isDirectory: false };
      return dirs.has(path) ? { size: 0, isDirectory: true } : undefined;
    },
    async writeFile(path, data) {
      put(path, data.slice());
    },
    async openWrite(path, { truncate }) {
      let chunks: Uint8Array[] = [truncate ? new Uint8Array(0) : (files.get(path) ?? new Uint8Array(0))];
      put(path, chunks[0]!);
      const flush = () => {
        const out = concatBytes(chunks);
        chunks = [out];
        put(path, out);
      };
      return {
        async write(chunk) {
          chunks.push(chunk.slice());
          flush();
        },
        async close() {
          flush();
        },
      };
    },
    async mkdir(path) {
      dirs.add(path);
      addDirs(path);
    },
    async rename(from, to) {
      const f = files.get(from);
      if (f === undefined) throw missing(from);
      files.delete(from);
      put(to, f);
    },
    async remove(path) {
      files.delete(path);
    },
    async removeEmptyFolder(path) {
      const under = `${path}/`;
      if ([...files.keys(), ...dirs].some((p) => p.startsWith(under))) return;
      dirs.delete(path);
    },
  };
}
