import { createHash } from 'node:crypto';
import { mkdir, open, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { badInput } from '@relp/core/errors';
import { readRegularFile, readRegularFilePrefix } from '@relp/core/node-files';
import { DEFAULT_HTTP_TIMEOUTS, type FetchLike, type HttpTimeouts } from './fetch.js';
import { joinPath, type LoaderFs } from './fs.js';

/** LoaderFs over node:fs/promises. */
export const nodeFs: LoaderFs = {
  readFile(path, options) {
    return readRegularFile(path, { what: 'file', ...options });
  },
  readPrefix(path, length) {
    return readRegularFilePrefix(path, length, { what: 'file' });
  },
  async stat(path) {
    try {
      const s = await stat(path);
      return { size: s.size, isDirectory: s.isDirectory() };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR')
        return undefined;
      throw e;
    }
  },
  async writeFile(path, data) {
    await writeFile(path, data);
  },
  async openWrite(path, { truncate }) {
    const handle = await open(path, truncate ? 'w' : 'a');
    return {
      async write(chunk) {
        let off = 0;
        while (off < chunk.byteLength) {
          const { bytesWritten } = await handle.write(chunk, off, chunk.byteLength - off);
          off += bytesWritten;
        }
      },
      async close() {
        await handle.close();
      },
    };
  },
  async mkdir(path) {
    await mkdir(path, { recursive: true });
  },
  async rename(from, to) {
    await rename(from, to);
  },
  async remove(path) {
    await rm(path, { force: true });
  },
  async removeEmptyFolder(path) {
    await rmdir(path).catch(() => undefined); // ENOTEMPTY, ENOENT: nothing to tidy
  },
};

/** The cache folder: $RELP_CACHE, else $XDG_CACHE_HOME/relp, else ~/.cache/relp. */
export function defaultCacheDir(
  env: Readonly<Record<string, string | undefined>> = process.env,
  home = homedir(),
): string {
  if (env.RELP_CACHE) return env.RELP_CACHE;
  if (env.XDG_CACHE_HOME) return joinPath(env.XDG_CACHE_HOME, 'relp');
  return joinPath(home, '.cache', 'relp');
}

/**
 * The HTTP timeouts: $RELP_HTTP_TIMEOUT_MS (milliseconds, a positive integer) sets both how long to wait for a
 * server's answer and for the next bytes of a body; unset, DEFAULT_HTTP_TIMEOUTS (30 s and 60 s). BAD_INPUT for
 * anything else.
 */
export function httpTimeoutsFromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
): HttpTimeouts {
  const v = env.RELP_HTTP_TIMEOUT_MS?.trim();
  if (v === undefined || v === '') return DEFAULT_HTTP_TIMEOUTS;
  const ms = /^\d+$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(ms) || ms < 1 || ms > 2 ** 31 - 1) {
    throw badInput(`RELP_HTTP_TIMEOUT_MS must be a positive whole number of milliseconds (got "${v}")`, {
      RELP_HTTP_TIMEOUT_MS: v,
    });
  }
  return { firstByteMs: ms, stallMs: ms };
}

/**
 * Node defaults for loadModel: the node file system, global fetch, the default cache, HF_ENDPOINT, HF_TOKEN,
 * RELP_HTTP_TIMEOUT_MS, and node:crypto's SHA-256.
 */
export function nodeLoadOptions(env: Readonly<Record<string, string | undefined>> = process.env): {
  fs: LoaderFs;
  fetch: FetchLike;
  cacheDir: string;
  endpoint?: string;
  token?: string;
  timeouts: HttpTimeouts;
  sha256: (bytes: Uint8Array) => string;
} {
  return {
    fs: nodeFs,
    // node:crypto hashes the bytes where they are (Web Crypto's digest copies them: a gigabyte for a 1.5B GGUF).
    sha256: (bytes) => createHash('sha256').update(bytes).digest('hex'),
    fetch: globalThis.fetch as unknown as FetchLike,
    cacheDir: defaultCacheDir(env),
    ...(env.HF_ENDPOINT ? { endpoint: env.HF_ENDPOINT } : {}),
    ...(env.HF_TOKEN ? { token: env.HF_TOKEN } : {}),
    timeouts: httpTimeoutsFromEnv(env),
  };
}
