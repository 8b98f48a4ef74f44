/**
 * TensorFlow.js's WebGPU backend in Node. Node has no `navigator.gpu`; Dawn's Node bindings (the `webgpu`
 * package) provide one. This module is side-effect free: Dawn is loaded, and `navigator.gpu` installed, only
 * when the loader's probe runs.
 *
 * @packageDocumentation
 */
import {
  type BackendLoader,
  describeAdapter,
  ErrorCodes,
  type GpuAdapterInfoLike,
  isSoftwareAdapter,
  type ProbeContext,
  RelpError,
} from '@relp/core';
import { findSwiftShaderIcd, vulkanDrivers } from './vulkan.js';

export {
  findSwiftShaderIcd,
  SWIFTSHADER_ICD_CANDIDATES,
  type VulkanDriver,
  vulkanDrivers,
  webgpuUnavailableReason,
} from './vulkan.js';

interface AdapterLike {
  readonly info?: GpuAdapterInfoLike;
  readonly isFallbackAdapter?: boolean;
}
interface GpuLike {
  requestAdapter(options?: {
    powerPreference?: 'high-performance' | 'low-power';
  }): Promise<AdapterLike | null>;
}
interface DawnModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}

/** What probing found: the GPU object to install, and what its adapter is. */
export type NodeGpuProbe =
  | { readonly ok: true; readonly gpu: GpuLike; readonly software: boolean; readonly adapter: string }
  | { readonly ok: false; readonly reason: string };

export interface NodeGpuOptions {
  /** The user named WebGPU: a software adapter is then acceptable (and SwiftShader is tried if nothing else). */
  readonly explicit: boolean;
  /** Environment (VK_ICD_FILENAMES, VK_DRIVER_FILES, RELP_SWIFTSHADER_ICD); process.env by default. */
  readonly env?: Record<string, string | undefined>;
  /** The environment Dawn's Vulkan loader reads: process.env (tests pass a stand-in). */
  readonly processEnv?: Record<string, string | undefined>;
  /** Loads Dawn's bindings; the `webgpu` package by default (tests pass a stand-in). */
  readonly loadDawn?: () => Promise<DawnModule>;
}

async function importDawn(): Promise<DawnModule> {
  return (await import('webgpu')) as unknown as DawnModule;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function adapterOf(dawn: DawnModule): Promise<AdapterLike | null> {
  return dawn.create([]).requestAdapter({ powerPreference: 'high-performance' });
}

/**
 * Finds a WebGPU adapter for Node. Automatic choice takes only a hardware adapter: it reads the Vulkan driver
 * manifests first, so a machine with no GPU driver does not even load Dawn. When WebGPU is asked for
 * explicitly, a software adapter is accepted, and if no driver is configured but SwiftShader's manifest is
 * installed (Debian's chromium-common), VK_ICD_FILENAMES is pointed at it, as the exactness tests on a machine
 * without a GPU do.
 */
export async function probeNodeGpu(options: NodeGpuOptions): Promise<NodeGpuProbe> {
  const env = options.env ?? process.env;
  const drivers = vulkanDrivers(env);
  const hardware = drivers.filter((d) => !d.software);
  if (!options.explicit && hardware.length === 0) {
    const sw = drivers.length > 0 ? ` (only software ones: ${drivers.map((d) => d.library).join(', ')})` : '';
    return {
      ok: false,
      reason: `no hardware GPU driver for Vulkan is installed${sw}; a software adapter is slower than the CPU backends (ask for one with --backend webgpu)`,
    };
  }
  let dawn: DawnModule;
  try {
    dawn = await (options.loadDawn ?? importDawn)();
  } catch (e) {
    return { ok: false, reason: `Dawn's Node bindings (the webgpu package) did not load: ${message(e)}` };
  }
  if (options.explicit && drivers.length === 0) {
    // No driver is installed, but SwiftShader's is: point the Vulkan loader at it (it reads the variable each
    // time an instance is made, so this process's Dawn instances see it).
    const icd = findSwiftShaderIcd(env);
    if (icd) {
      env.VK_ICD_FILENAMES = icd;
      // Dawn's Vulkan loader reads the process's own environment, whatever copy the caller passed.
      (options.processEnv ?? process.env).VK_ICD_FILENAMES = icd;
    }
  }
  const adapter = await adapterOf(dawn).catch(() => null);
  if (!adapter) {
    return {
      ok: false,
      reason:
        drivers.length === 0
          ? 'no Vulkan driver is installed (install a GPU driver, or libvulkan1 and a software driver such as SwiftShader from chromium-common)'
          : `Dawn found no WebGPU adapter among the Vulkan drivers ${drivers.map((d) => d.library).join(', ')} (is libvulkan1 installed?)`,
    };
  }
  const software = isSoftwareAdapter(adapter.info, adapter.isFallbackAdapter);
  const described = describeAdapter(adapter.info, adapter.isFallbackAdapter);
  if (software && !options.explicit) {
    return {
      ok: false,
      reason: `the only WebGPU adapter is ${described}, slower than the CPU backends (ask for it with --backend webgpu)`,
    };
  }
  return { ok: true, gpu: dawnGpu(dawn), software, adapter: described };
}

// One Dawn instance for the process once an adapter was found (tfjs asks navigator.gpu for its own adapter).
let installedGpu: GpuLike | undefined;
function dawnGpu(dawn: DawnModule): GpuLike {
  installedGpu ??= dawn.create([]);
  return installedGpu;
}

/** Makes `gpu` the process's `navigator.gpu` and defines WebGPU's constants (GPUBufferUsage, …) globally. */
function installNavigatorGpu(gpu: GpuLike, globals: Record<string, unknown>): void {
  const g = globalThis as { navigator?: { gpu?: unknown } } & Record<string, unknown>;
  for (const [k, v] of Object.entries(globals)) if (!(k in g)) g[k] = v;
  if (g.navigator === undefined) {
    Object.defineProperty(g, 'navigator', { value: { gpu }, configurable: true, writable: true });
  } else if (g.navigator.gpu === undefined) {
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
  }
}

interface TensorData {
  values: unknown;
  resource: unknown;
  dtype: string;
  shape: number[];
}
interface BackendInternals {
  tensorMap: { get(dataId: object): TensorData | undefined };
  uploadToGPU(dataId: object): void;
  readSync(dataId: object): unknown;
}

// Integer tensors up to this many elements keep a host copy once uploaded (token ids, index lists).
const HOST_COPY_LIMIT = 1 << 20;
const ADAPTED = Symbol.for('relp.webgpuNodeAdapted');

/**
 * tfjs reads a GPU buffer synchronously by drawing it into an OffscreenCanvas, which Node lacks. relp reads
 * small integer tensors synchronously (token ids are checked on the host before a run), so those keep their
 * host values after upload; any other synchronous read raises an error that says to read asynchronously.
 */
function adaptForNode(proto: BackendInternals): void {
  const marked = proto as unknown as Record<symbol, boolean>;
  if (marked[ADAPTED]) return;
  marked[ADAPTED] = true;
  const upload = proto.uploadToGPU;
  proto.uploadToGPU = function (this: BackendInternals, dataId: object) {
    const data = this.tensorMap.get(dataId);
    const keep =
      data !== undefined &&
      data.resource == null &&
      data.values != null &&
      (data.dtype === 'int32' || data.dtype === 'bool') &&
      data.shape.reduce((a, b) => a * b, 1) <= HOST_COPY_LIMIT
        ? data.values
        : undefined;
    upload.call(this, dataId);
    if (keep !== undefined && data !== undefined) data.values = keep;
  };
  const readSync = proto.readSync;
  proto.readSync = function (this: BackendInternals, dataId: object) {
    const data = this.tensorMap.get(dataId);
    if (data !== undefined && data.values == null && data.dtype !== 'string') {
      throw new RelpError(
        ErrorCodes.Backend,
        "WebGPU in Node cannot read a GPU tensor synchronously (dataSync/arraySync): read it with 'await tensor.data()'",
      );
    }
    return readSync.call(this, dataId);
  };
}

/**
 * The `webgpu` loader for core's selectBackend in Node. Probing says which adapter it found and why it was or
 * was not taken; registering installs `navigator.gpu` and imports tfjs's WebGPU backend.
 */
export function webgpuNodeBackendLoader(options: Omit<NodeGpuOptions, 'explicit'> = {}): BackendLoader {
  let found: { gpu: GpuLike; dawn: DawnModule } | undefined;
  return {
    name: 'webgpu',
    async probe(context?: ProbeContext) {
      let dawn: DawnModule | undefined;
      const load = async () => {
        dawn = await (options.loadDawn ?? importDawn)();
        return dawn;
      };
      const p = await probeNodeGpu({ ...options, explicit: context?.explicit ?? false, loadDawn: load });
      if (!p.ok) return { ok: false, reason: p.reason };
      found = { gpu: p.gpu, dawn: dawn as DawnModule };
      const note = p.software ? ', for exactness checks (slower than the CPU backends)' : '';
      return { ok: true, detail: `WebGPU in Node (Dawn), adapter ${p.adapter}${note}` };
    },
    async register() {
      if (!found) throw new Error('the webgpu loader registers only after a successful probe');
      installNavigatorGpu(found.gpu, found.dawn.globals);
      const webgpu = await import('@tensorflow/tfjs-backend-webgpu');
      adaptForNode(webgpu.WebGPUBackend.prototype as unknown as BackendInternals);
    },
  };
}
