import { loadAddon } from './addon.js';

export {
  ADDON_PATH,
  type AddonStatus,
  loadAddon,
  type NativeAddon,
  nativeAvailable,
  resetAddonStatus,
} from './addon.js';

/** What the addon reports: OpenBLAS's configuration, core type and thread count. */
export function nativeInfo(): { threads: number; blas: string; core: string } | undefined {
  const s = loadAddon();
  return s.ok ? s.addon.info() : undefined;
}

/**
 * Sets the number of threads the native kernels use, OpenBLAS's and the element-wise OpenMP loops' (default: all
 * cores, or OPENBLAS_NUM_THREADS).
 */
export function setNativeThreads(n: number): void {
  const s = loadAddon();
  if (s.ok) s.addon.setThreads(n);
}

/** Whether the native backend can run here, and why not. Registers nothing. */
export async function probeNative(): Promise<{ ok: true; detail?: string } | { ok: false; reason: string }> {
  const s = loadAddon();
  if (!s.ok) return { ok: false, reason: s.reason };
  const i = s.addon.info();
  return { ok: true, detail: `OpenBLAS ${i.core || ''} with ${i.threads} thread(s)`.replace('  ', ' ') };
}

/** Imports tfjs's CPU backend and registers `native` on top of it (idempotent). */
export async function registerNative(): Promise<void> {
  const { registerNativeBackend } = await import('./backend.js');
  registerNativeBackend();
}

/**
 * The shape of @relp/core's BackendLoader, restated here so that this package does not depend on core (core's
 * tests run on this backend through @relp/testing, which would make a cycle). It is assignable to it.
 */
export interface NativeBackendLoader {
  readonly name: 'native';
  probe(): Promise<{ ok: true; detail?: string } | { ok: false; reason: string }>;
  register(): Promise<void>;
}

/**
 * The loader the CLI passes to core's selectBackend: `native` comes first in BACKEND_PREFERENCE, so Node picks
 * it whenever the addon is built, and the probe says why not otherwise.
 */
export const nativeBackendLoader: NativeBackendLoader = {
  name: 'native',
  probe: probeNative,
  register: registerNative,
};
