import * as tf from '@tensorflow/tfjs-core';
import { ErrorCodes, RelpError } from './errors.js';

/**
 * Backends in the order relp prefers them when nothing is asked for: a hardware GPU first (a WebGPU loader's
 * probe refuses a software adapter unless asked for explicitly), then native CPU kernels, WASM, plain JS.
 */
export const BACKEND_PREFERENCE = ['webgpu', 'native', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_PREFERENCE)[number];

export function isBackendName(s: string): s is BackendName {
  return (BACKEND_PREFERENCE as readonly string[]).includes(s);
}

/**
 * How to bring one backend up. Core imports no backend (importing one registers it, a side effect); the
 * entry points (CLI, web) pass loaders that import them. `probe` says whether the backend can work here
 * (e.g. a WebGPU adapter exists) before anything is registered.
 */
export interface BackendLoader {
  readonly name: BackendName;
  /**
   * `explicit` is true when the user named this backend: a probe may then accept what it would not pick on its
   * own (e.g. a software WebGPU adapter, slower than the CPU backends).
   */
  probe(context?: ProbeContext): Promise<{ ok: true; detail?: string } | { ok: false; reason: string }>;
  /** Imports and registers the backend with tfjs (idempotent). */
  register(): Promise<void>;
}

export interface ProbeContext {
  readonly explicit: boolean;
}

export interface BackendChoice {
  readonly name: BackendName;
  /** Why this backend: asked for explicitly, or the first that worked, with why the others did not. */
  readonly reason: string;
  /** What each backend tried said, in order. */
  readonly tried: readonly { name: BackendName; ok: boolean; note: string }[];
}

export interface SelectBackendOptions {
  readonly loaders: readonly BackendLoader[];
  /** An explicit choice (option or --backend); overrides the environment variable. */
  readonly requested?: string | undefined;
  /** Environment (RELP_BACKEND is read from it); pass process.env in Node. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/**
 * Picks and activates a backend: the explicit request, else RELP_BACKEND, else the first of
 * native → webgpu → wasm → cpu whose probe passes and which initialises. Reports the choice and why.
 */
export async function selectBackend(options: SelectBackendOptions): Promise<BackendChoice> {
  const explicit = options.requested ?? options.env?.RELP_BACKEND;
  const source = options.requested !== undefined ? 'requested' : 'RELP_BACKEND';
  const byName = new Map(options.loaders.map((l) => [l.name, l]));
  const tried: { name: BackendName; ok: boolean; note: string }[] = [];

  if (explicit !== undefined && explicit !== '' && explicit !== 'auto') {
    if (!isBackendName(explicit)) {
      throw new RelpError(
        ErrorCodes.BadInput,
        `unknown backend '${explicit}' (${source}); choose one of ${BACKEND_PREFERENCE.join(', ')} or auto`,
      );
    }
    const loader = byName.get(explicit);
    if (!loader) {
      throw new RelpError(ErrorCodes.Backend, `backend '${explicit}' is not available in this build`);
    }
    const probe = await loader.probe({ explicit: true });
    if (!probe.ok)
      throw new RelpError(ErrorCodes.Backend, `backend '${explicit}' cannot run here: ${probe.reason}`);
    await activate(loader);
    tried.push({ name: explicit, ok: true, note: probe.detail ?? 'ok' });
    return {
      name: explicit,
      reason: `${source} explicitly${probe.detail ? ` (${probe.detail})` : ''}`,
      tried,
    };
  }

  for (const name of BACKEND_PREFERENCE) {
    const loader = byName.get(name);
    if (!loader) continue;
    const probe = await loader
      .probe({ explicit: false })
      .catch((e: unknown) => ({ ok: false as const, reason: String(e) }));
    if (!probe.ok) {
      tried.push({ name, ok: false, note: probe.reason });
      continue;
    }
    try {
      await activate(loader);
    } catch (e) {
      tried.push({
        name,
        ok: false,
        note: `failed to initialise: ${e instanceof Error ? e.message : String(e)}`,
      });
      continue;
    }
    tried.push({ name, ok: true, note: probe.detail ?? 'ok' });
    const skipped = tried.filter((t) => !t.ok).map((t) => `${t.name}: ${t.note}`);
    const why = skipped.length > 0 ? ` (skipped ${skipped.join('; ')})` : '';
    return { name, reason: `first available${probe.detail ? `, ${probe.detail}` : ''}${why}`, tried };
  }
  throw new RelpError(
    ErrorCodes.Backend,
    `no backend could start: ${tried.map((t) => `${t.name}: ${t.note}`).join('; ') || 'no loaders given'}`,
  );
}

async function activate(loader: BackendLoader): Promise<void> {
  await loader.register();
  const ok = await tf.setBackend(loader.name);
  if (!ok) throw new RelpError(ErrorCodes.Backend, `tfjs could not initialise backend '${loader.name}'`);
  await tf.ready();
}

/**
 * Whether a model built now should hold a transposed copy of each weight matrix for its backward pass
 * (dx = dy·Wᵀ as a plain matmul). Only tfjs's wasm backend needs it: its transposeB product is a slow loop
 * next to XNNPACK's plain one (6–15× at GPT-2-small shapes), while the native (BLAS), WebGPU and cpu kernels
 * read the transpose flag directly, so there the copy would only double the weights' memory.
 */
export function wantsTransposedWeightCopies(): boolean {
  return tf.getBackend() === 'wasm';
}

/** What a WebGPU adapter reports about itself (GPUAdapterInfo's fields, all optional). */
export interface GpuAdapterInfoLike {
  readonly vendor?: string;
  readonly architecture?: string;
  readonly device?: string;
  readonly description?: string;
}

// Names software rasterisers report in GPUAdapterInfo (Dawn over SwiftShader, Mesa's llvmpipe/lavapipe, WARP).
const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|software|microsoft basic render|\bwarp\b/i;

/**
 * Whether a WebGPU adapter is a software renderer: one that says so (`isFallbackAdapter`) or that names a
 * software rasteriser. Such an adapter computes correctly but slower than relp's CPU backends, so automatic
 * choice skips it.
 */
export function isSoftwareAdapter(
  info: GpuAdapterInfoLike | undefined,
  isFallbackAdapter?: boolean,
): boolean {
  if (isFallbackAdapter === true) return true;
  const text = [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(' ');
  return SOFTWARE_ADAPTER.test(text);
}

/** A one-line description of an adapter ("google swiftshader (software)"). */
export function describeAdapter(info: GpuAdapterInfoLike | undefined, isFallbackAdapter?: boolean): string {
  const parts = [info?.vendor, info?.architecture, info?.device, info?.description].filter(
    (s): s is string => s !== undefined && s !== '',
  );
  const name = parts.join(' ') || 'unnamed adapter';
  return isSoftwareAdapter(info, isFallbackAdapter) ? `${name} (software)` : name;
}
