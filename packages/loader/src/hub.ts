import { ErrorCodes, RelpError } from '@relp/core/errors';
import {
  bodyChunks,
  DEFAULT_HTTP_TIMEOUTS,
  type FetchLike,
  fetchWithTimeout,
  type HttpTimeouts,
  type ResponseLike,
} from './fetch.js';
import { dirname, joinPath, type LoaderFs } from './fs.js';
import { sha256Hex } from './hash.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** Progress of one file: the CLI draws a bar from it. `cached`: served from the cache, no download. */
export interface DownloadProgress {
  readonly file: string;
  readonly bytesDone: number;
  /** Unknown when the server sends no length. */
  readonly bytesTotal: number | undefined;
  readonly done: boolean;
  readonly cached: boolean;
}

export interface HubOptions {
  readonly fs: LoaderFs;
  /** Absent: offline, only the cache is used. */
  readonly fetch?: FetchLike;
  readonly cacheDir: string;
  readonly endpoint?: string;
  /** A Hugging Face access token, for gated or private repositories. */
  readonly token?: string;
  readonly onProgress?: (p: DownloadProgress) => void;
  readonly signal?: AbortSignal;
  /** How long to wait on a silent server (default DEFAULT_HTTP_TIMEOUTS: 30 s for an answer, 60 s mid-body). */
  readonly timeouts?: Partial<HttpTimeouts>;
}

const ID_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;

/** Whether a string is a hub repository id: "name" or "owner/name". */
export function isHubId(id: string): boolean {
  const parts = id.split('/');
  return parts.length <= 2 && parts.every((p) => ID_SEGMENT.test(p) && !p.includes('..'));
}

/** Revisions are branch, tag or commit names; "/" (e.g. refs/pr/1) is kept but no segment may be "." or "..". */
export function isSafeRevision(rev: string): boolean {
  return (
    rev.length > 0 &&
    rev.length <= 200 &&
    /^[A-Za-z0-9._/-]+$/.test(rev) &&
    rev.split('/').every((s) => s !== '' && s !== '.' && s !== '..')
  );
}

/** The cache folder of one repository revision: <cacheDir>/hub/<id>/<revision> (revision URI-encoded). */
export function hubCacheFolder(cacheDir: string, id: string, revision: string): string {
  return joinPath(cacheDir, 'hub', id, encodeURIComponent(revision));
}

export function hubFileUrl(endpoint: string, id: string, revision: string, file: string): string {
  const path = file.split('/').map(encodeURIComponent).join('/');
  return `${endpoint.replace(/\/+$/, '')}/${id}/resolve/${encodeURIComponent(revision)}/${path}`;
}

/** Thrown inside the downloader when the network is unreachable; the resolver collects these into NOT_AVAILABLE. */
export class OfflineError extends Error {
  override readonly name = 'OfflineError';
}

const SHA256_ETAG = /^(?:W\/)?"?([0-9a-f]{64})"?$/;

function expectedSha256(res: ResponseLike): string | undefined {
  for (const h of ['x-linked-etag', 'etag']) {
    const v = res.headers.get(h);
    const m = v === null ? null : SHA256_ETAG.exec(v.trim());
    if (m) return m[1];
  }
  return undefined;
}

function parseIntHeader(v: string | null): number | undefined {
  if (v === null || !/^\d+$/.test(v.trim())) return undefined;
  const n = Number(v.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

/** "bytes 100-199/1000" → {start: 100, total: 1000}. */
function parseContentRange(v: string | null): { start: number; total: number | undefined } | undefined {
  const m = v === null ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(v.trim());
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

function notAvailable(message: string, details: Record<string, unknown> = {}, cause?: unknown): RelpError {
  return new RelpError(ErrorCodes.NotAvailable, message, { details, cause });
}

/**
 * Makes sure `file` of repository `id` at `revision` is in the cache and returns its path. A cached file is reused
 * without touching the network. A download goes to `<file>.part` and is renamed into place only after its size
 * (and SHA-256, when the hub's ETag is one) check out, so the cache never holds a partial file under the final
 * name; an interrupted download resumes from its `.part` with an HTTP Range request.
 * Returns undefined when the server says the file does not exist (remembered in a `<file>.absent` marker).
 * Throws OfflineError when the network cannot be reached (a 404 is undefined, not an error), RelpError
 * NOT_AVAILABLE for HTTP errors, interrupted transfers and failed checks.
 */
export async function ensureHubFile(
  id: string,
  revision: string,
  file: string,
  options: HubOptions,
): Promise<string | undefined> {
  const { fs } = options;
  const folder = hubCacheFolder(options.cacheDir, id, revision);
  const final = joinPath(folder, file);
  const cached = await fs.stat(final);
  if (cached !== undefined && !cached.isDirectory) {
    options.onProgress?.({ file, bytesDone: cached.size, bytesTotal: cached.size, done: true, cached: true });
    return final;
  }
  if ((await fs.stat(`${final}.absent`)) !== undefined) return undefined;
  if (options.fetch === undefined) throw new OfflineError('offline: no fetch function given');
  // Folders are made only once the server answered; a download that fails leaves none of them behind empty.
  const created = await missingFolders(fs, dirname(final), options.cacheDir);
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      const result = await download(id, revision, file, final, options, options.fetch);
      if (result === 'retry') continue;
      return result;
    }
    throw notAvailable(`${id}: the server kept refusing the resume of ${file}`, { file });
  } catch (e) {
    await removeEmptyFolders(fs, created);
    throw e;
  }
}

/** The folders from `folder` up to `root` (the cache folder itself included) that do not exist yet, deepest first. */
async function missingFolders(fs: LoaderFs, folder: string, root: string): Promise<string[]> {
  const out: string[] = [];
  for (let d = folder; d !== '.' && d !== '/' && d.length >= root.length; d = dirname(d)) {
    if ((await fs.stat(d)) !== undefined) break;
    out.push(d);
  }
  return out;
}

async function removeEmptyFolders(fs: LoaderFs, folders: readonly string[]): Promise<void> {
  if (fs.removeEmptyFolder === undefined) return;
  for (const d of folders) await fs.removeEmptyFolder(d).catch(() => undefined);
}

function timeoutsOf(options: HubOptions): HttpTimeouts {
  return { ...DEFAULT_HTTP_TIMEOUTS, ...options.timeouts };
}

async function download(
  id: string,
  revision: string,
  file: string,
  final: string,
  options: HubOptions,
  fetchFn: FetchLike,
): Promise<string | undefined | 'retry'> {
  const { fs } = options;
  const part = `${final}.part`;
  const etagFile = `${final}.part.etag`;
  const partStat = await fs.stat(part);
  const have = partStat?.size ?? 0;
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  if (have > 0) {
    headers.range = `bytes=${have}-`;
    if ((await fs.stat(etagFile)) !== undefined)
      headers['if-range'] = new TextDecoder().decode(await fs.readFile(etagFile, { maxBytes: 1024 }));
  }
  const url = hubFileUrl(options.endpoint ?? DEFAULT_ENDPOINT, id, revision, file);
  const timeouts = timeoutsOf(options);
  let res: ResponseLike;
  let abort: () => void;
  try {
    ({ res, abort } = await fetchWithTimeout(fetchFn, url, headers, timeouts, options.signal));
  } catch (e) {
    if (options.signal?.aborted)
      throw new RelpError(ErrorCodes.Aborted, `download of ${file} aborted`, { cause: e });
    throw new OfflineError(e instanceof Error ? e.message : String(e), { cause: e });
  }
  if (res.status === 404) {
    await fs.mkdir(dirname(final));
    await fs.writeFile(`${final}.absent`, new Uint8Array(0));
    return undefined;
  }
  if (res.status === 416) {
    // The part is no prefix of the file (it changed, or is complete and longer): start over.
    await fs.remove(part);
    await fs.remove(etagFile);
    return 'retry';
  }
  if (res.status === 401 || res.status === 403) {
    throw notAvailable(
      `${id}: ${file} needs authorisation (HTTP ${res.status}); the repository may be gated or private: set a token (HF_TOKEN)`,
      { file, status: res.status, url },
    );
  }
  if (res.status !== 200 && res.status !== 206) {
    throw notAvailable(
      `${id}: downloading ${file} failed with HTTP ${res.status} ${res.statusText ?? ''}`.trim(),
      {
        file,
        status: res.status,
        url,
      },
    );
  }
  let start = 0;
  let total: number | undefined;
  const length = parseIntHeader(res.headers.get('content-length'));
  if (res.status === 206) {
    const range = parseContentRange(res.headers.get('content-range'));
    if (range === undefined || range.start !== have) {
      await fs.remove(part);
      await fs.remove(etagFile);
      return 'retry';
    }
    start = have;
    total = range.total ?? (length === undefined ? undefined : have + length);
  } else {
    total = length ?? parseIntHeader(res.headers.get('x-linked-size'));
  }
  const sha = expectedSha256(res);
  const etag = res.headers.get('x-linked-etag') ?? res.headers.get('etag');
  await fs.mkdir(dirname(final));
  if (etag !== null) await fs.writeFile(etagFile, new TextEncoder().encode(etag));
  const sink = await fs.openWrite(part, { truncate: start === 0 });
  let done = start;
  options.onProgress?.({ file, bytesDone: done, bytesTotal: total, done: false, cached: false });
  try {
    for await (const chunk of bodyChunks(res, url, timeouts.stallMs, abort)) {
      await sink.write(chunk);
      done += chunk.byteLength;
      options.onProgress?.({ file, bytesDone: done, bytesTotal: total, done: false, cached: false });
    }
  } catch (e) {
    await sink.close().catch(() => undefined);
    if (options.signal?.aborted)
      throw new RelpError(ErrorCodes.Aborted, `download of ${file} aborted`, { cause: e });
    throw notAvailable(
      `${id}: the download of ${file} was interrupted after ${done} bytes (${e instanceof Error ? e.message : String(e)}); run again to resume`,
      { file, bytesDone: done, bytesTotal: total },
      e,
    );
  }
  await sink.close();
  const size = (await fs.stat(part))?.size ?? 0;
  if (total !== undefined && size !== total) {
    if (size > total) {
      await fs.remove(part);
      await fs.remove(etagFile);
    }
    throw notAvailable(
      `${id}: ${file} has ${size} bytes after download, expected ${total}; run again to resume`,
      {
        file,
        size,
        expected: total,
      },
    );
  }
  if (sha !== undefined) {
    const got = await sha256Hex(await fs.readFile(part));
    if (got !== sha) {
      await fs.remove(part);
      await fs.remove(etagFile);
      throw notAvailable(
        `${id}: ${file} failed its SHA-256 check (got ${got}, expected ${sha}); it was removed, run again`,
        {
          file,
          sha256: got,
          expected: sha,
        },
      );
    }
  }
  await fs.rename(part, final);
  await fs.remove(etagFile);
  options.onProgress?.({ file, bytesDone: size, bytesTotal: size, done: true, cached: false });
  return final;
}
