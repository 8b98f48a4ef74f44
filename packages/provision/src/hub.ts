import { DEFAULT_ENDPOINT, ensureHubFile, type FetchLike, type HttpTimeouts, hubFileUrl } from '@relp/loader';
import { nodeFs } from '@relp/loader/node';
import type { Candidate, ProvisionProgress } from './options.js';
import type { HubSource } from './registry.js';

export interface HubDownload {
  readonly cacheDir: string;
  readonly endpoint: string | undefined;
  readonly token: string | undefined;
  readonly fetch: FetchLike | undefined;
  /** How long to wait for the hub's answer, and on a stalled body, before giving up on it. */
  readonly timeouts: HttpTimeouts;
  readonly signal: AbortSignal | undefined;
}

/**
 * Downloads a file from the hub with the loader's downloader: into its hub cache (<cacheDir>/hub/<repo>/
 * <revision>/, resumable through a `.part` file, size and ETag checks, timeouts), from where the caller moves it
 * into the model's folder once its own checks hold. A plain Error or a RelpError says why the hub could not give it.
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
  let reported = Number.NEGATIVE_INFINITY;
  const path = await ensureHubFile(hub.repo, hub.revision, hub.file, {
    fs: nodeFs,
    fetch: fetchFn,
    cacheDir: o.cacheDir,
    endpoint,
    ...(o.token ? { token: o.token } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    timeouts: o.timeouts,
    onProgress: (p) => {
      if (!p.done && p.bytesDone - reported < 1 << 20) return;
      reported = p.bytesDone;
      const bytesTotal = p.bytesTotal ?? expectedSize;
      progress({ alias, phase: 'download', source: 'hub', item: url, bytesDone: p.bytesDone, bytesTotal });
    },
  });
  if (path === undefined) throw new Error(`HTTP 404 for ${url}`);
  return { path, source: { kind: 'hub', repo: hub.repo, revision: hub.revision, url } };
}
