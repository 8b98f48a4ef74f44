import { DEFAULT_ENDPOINT, ensureHubFile, type FetchLike, hubFileUrl } from '@relp/loader';
import { nodeFs } from '@relp/loader/node';
import type { Candidate, ProvisionProgress } from './options.js';
import type { HubSource } from './registry.js';

export interface HubDownload {
  readonly cacheDir: string;
  readonly endpoint: string | undefined;
  readonly token: string | undefined;
  readonly fetch: FetchLike | undefined;
  /** Milliseconds without a response before the hub counts as unreachable. */
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
}

/**
 * Downloads a file from the hub with the loader's downloader: into its hub cache (<cacheDir>/hub/<repo>/
 * <revision>/, resumable through a `.part` file, size and ETag checks), from where the caller moves it into the
 * model's folder once its own checks hold. A plain Error says why the hub could not give it.
 */
export async function downloadFromHub(
  alias: string,
  hub: HubSource,
  expectedSize: number | undefined,
  o: HubDownload,
  progress: (p: ProvisionProgress) => void,
): Promise<Candidate> {
  const fetchFn = o.fetch ?? (globalThis.fetch as unknown as FetchLike | undefined);
  if (fetchFn === undefined) throw new Error('no fetch available');
  const endpoint = o.endpoint ?? DEFAULT_ENDPOINT;
  const url = hubFileUrl(endpoint, hub.repo, hub.revision, hub.file);
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), o.timeoutMs);
  const onAbort = () => timeout.abort();
  o.signal?.addEventListener('abort', onAbort);
  let reported = Number.NEGATIVE_INFINITY;
  try {
    const path = await ensureHubFile(hub.repo, hub.revision, hub.file, {
      fs: nodeFs,
      fetch: fetchFn,
      cacheDir: o.cacheDir,
      endpoint,
      ...(o.token ? { token: o.token } : {}),
      signal: timeout.signal,
      onProgress: (p) => {
        clearTimeout(timer); // the hub answered: from here on only the caller's signal stops the transfer
        if (!p.done && p.bytesDone - reported < 1 << 20) return;
        reported = p.bytesDone;
        const bytesTotal = p.bytesTotal ?? expectedSize;
        progress({ alias, phase: 'download', source: 'hub', item: url, bytesDone: p.bytesDone, bytesTotal });
      },
    });
    if (path === undefined) throw new Error(`HTTP 404 for ${url}`);
    return { path, source: { kind: 'hub', repo: hub.repo, revision: hub.revision, url } };
  } catch (e) {
    if (timeout.signal.aborted && !o.signal?.aborted)
      throw new Error(`hub not reachable (${url}): timed out`);
    throw e;
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', onAbort);
  }
}
