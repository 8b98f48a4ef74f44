import {
  type BackendChoice,
  type BackendLoader,
  describeAdapter,
  isSoftwareAdapter,
  selectBackend,
} from '@relp/core';

/**
 * Where the tfjs WASM binaries are served: a folder URL ending in "/" or one URL per file name
 * (`tfjs-backend-wasm.wasm`, `tfjs-backend-wasm-simd.wasm`, `tfjs-backend-wasm-threaded-simd.wasm`), as
 * `setWasmPaths` takes them. Absolute URLs: a worker resolves relative ones against its own script.
 */
export type WasmPaths = string | Readonly<Record<string, string>>;

interface GpuAdapterInfo {
  vendor?: string;
  architecture?: string;
  description?: string;
  device?: string;
}
interface GpuAdapterLike {
  readonly info?: GpuAdapterInfo;
  /** Older Chromium (before `adapter.info`). */
  requestAdapterInfo?(): Promise<GpuAdapterInfo>;
  readonly isFallbackAdapter?: boolean;
}
interface GpuLike {
  requestAdapter(options?: { powerPreference?: string }): Promise<GpuAdapterLike | null>;
}

/** A browser backend choice: core's, plus one line for the page (what runs, how, and why not the others). */
export interface BrowserBackendChoice extends BackendChoice {
  /** E.g. "WASM (4 threads, SIMD) — WebGPU adapter is software (google swiftshader), slower than WASM". */
  readonly status: string;
  /** WASM only: XNNPACK's thread count (1 when the page is not cross-origin isolated) and SIMD. */
  readonly wasm?: { readonly threads: number; readonly simd: boolean; readonly isolated: boolean };
}

const navigatorCores = () =>
  (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;

/**
 * tfjs-backend-wasm caps its thread pool at half of `navigator.hardwareConcurrency` (read when its module starts,
 * assuming two hardware threads per core), so a 2-core machine gets one thread whatever `setThreadsCount` asks.
 * Until the backend has started, this scope's navigator reports twice the wanted count; `restoreCores` undoes it.
 */
function reportCoresForTfjs(threads: number): void {
  const nav = (globalThis as { navigator?: object }).navigator;
  if (nav) Object.defineProperty(nav, 'hardwareConcurrency', { value: threads * 2, configurable: true });
}

function restoreCores(): void {
  const nav = (globalThis as { navigator?: object }).navigator;
  if (nav && Object.hasOwn(nav, 'hardwareConcurrency'))
    delete (nav as { hardwareConcurrency?: number }).hardwareConcurrency;
}

const isolated = () => (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;

/** The adapter's info: `adapter.info` (current) or `requestAdapterInfo()` (older Chromium). */
async function adapterInfo(adapter: GpuAdapterLike): Promise<GpuAdapterInfo | undefined> {
  if (adapter.info) return adapter.info;
  return adapter.requestAdapterInfo?.().catch(() => undefined);
}

/**
 * The backends a page or worker can use, in core's order of preference: WebGPU when `navigator.gpu` gives a
 * hardware adapter (a software one, e.g. SwiftShader, only when WebGPU is asked for by name: it is many times
 * slower than WASM), WASM (with the binaries at `wasmPaths`, so the site serves them; threaded when the page is
 * cross-origin isolated), plain-JavaScript CPU. Each backend's package is imported only when it is chosen.
 */
export function browserBackendLoaders(options: { readonly wasmPaths?: WasmPaths } = {}): BackendLoader[] {
  return [
    {
      name: 'webgpu',
      async probe(context) {
        const gpu = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
        if (!gpu) return { ok: false, reason: 'this browser has no WebGPU (navigator.gpu is missing)' };
        const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
        if (!adapter) return { ok: false, reason: 'navigator.gpu gives no adapter' };
        const info = await adapterInfo(adapter);
        const name = describeAdapter(info, adapter.isFallbackAdapter);
        if (isSoftwareAdapter(info, adapter.isFallbackAdapter) && context?.explicit !== true) {
          const bare = name.replace(/ \(software\)$/, '');
          return { ok: false, reason: `adapter is software (${bare}), slower than WASM` };
        }
        return { ok: true, detail: `adapter ${name}` };
      },
      async register() {
        await import('@tensorflow/tfjs-backend-webgpu');
      },
    },
    {
      name: 'wasm',
      async probe() {
        if (typeof WebAssembly !== 'object') return { ok: false, reason: 'this browser has no WebAssembly' };
        return { ok: true };
      },
      async register() {
        const wasm = await import('@tensorflow/tfjs-backend-wasm');
        if (options.wasmPaths !== undefined) {
          wasm.setWasmPaths(options.wasmPaths as string | Record<string, string>);
        }
        // XNNPACK's thread pool, when the page is cross-origin isolated (else tfjs runs the single-threaded
        // binary): one thread per logical core, at most the 8 workers tfjs's build starts.
        const cores = navigatorCores();
        if (isolated() && cores > 1) {
          const threads = Math.min(cores, 8);
          wasm.setThreadsCount(threads);
          reportCoresForTfjs(threads);
        }
      },
    },
    {
      name: 'cpu',
      async probe() {
        return { ok: true, detail: 'plain JavaScript kernels (slow)' };
      },
      async register() {
        await import('@tensorflow/tfjs-backend-cpu');
      },
    },
  ];
}

const TITLES: Record<string, string> = {
  webgpu: 'WebGPU',
  wasm: 'WASM',
  cpu: 'CPU (JavaScript)',
  native: 'native',
};

/** WASM's thread count and SIMD, read from the initialised backend. */
async function wasmFacts(): Promise<NonNullable<BrowserBackendChoice['wasm']>> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const tf = await import('@tensorflow/tfjs-core');
  const simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) === true;
  return { threads: wasm.getThreadsCount(), simd, isolated: isolated() };
}

/**
 * The page's one status line for a choice: what runs and how ("WASM (4 threads, SIMD)"), then why not each
 * backend tried before it ("WebGPU: adapter is software (…), slower than WASM"), each reason once.
 */
export function backendStatus(choice: BackendChoice, wasm?: BrowserBackendChoice['wasm']): string {
  const picked = choice.tried.find((t) => t.name === choice.name && t.ok);
  let what = TITLES[choice.name] ?? choice.name;
  if (choice.name === 'wasm' && wasm) {
    const threads = wasm.threads > 1 ? `${wasm.threads} threads` : '1 thread';
    what += ` (${threads}${wasm.simd ? ', SIMD' : ''}${wasm.isolated ? '' : ': the page is not cross-origin isolated'})`;
  } else if (picked?.note && picked.note !== 'ok') {
    what += ` (${picked.note})`;
  }
  const explicit = choice.reason.startsWith('requested');
  const skipped = choice.tried
    .filter((t) => !t.ok)
    .map((t) => `${TITLES[t.name] ?? t.name} ${t.note.startsWith('adapter') ? '' : 'skipped: '}${t.note}`);
  return [explicit ? `${what}, as asked` : what, ...skipped].join(' — ');
}

/**
 * "auto" (or undefined) picks WebGPU on a hardware adapter → WASM → CPU; a backend name forces it (a software
 * WebGPU adapter included), with an error if it cannot run. Says what was picked and why in `status`.
 */
export async function selectBrowserBackend(options: {
  readonly requested?: string;
  readonly wasmPaths?: WasmPaths;
}): Promise<BrowserBackendChoice> {
  let choice: BackendChoice;
  try {
    choice = await selectBackend({
      loaders: browserBackendLoaders(options.wasmPaths === undefined ? {} : { wasmPaths: options.wasmPaths }),
      requested: options.requested === 'auto' ? undefined : options.requested,
    });
  } finally {
    restoreCores();
  }
  const wasm = choice.name === 'wasm' ? await wasmFacts() : undefined;
  return { ...choice, status: backendStatus(choice, wasm), ...(wasm ? { wasm } : {}) };
}
