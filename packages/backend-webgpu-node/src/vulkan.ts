import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Where the Vulkan loader looks for driver manifests (ICD JSON files) on Linux, in its own order. Dawn's Node
 * build reaches GPUs through Vulkan there, so these files say, before Dawn is loaded, whether any GPU driver
 * is installed at all.
 */
const ICD_FOLDERS = [
  '/etc/vulkan/icd.d',
  '/usr/local/etc/vulkan/icd.d',
  '/usr/local/share/vulkan/icd.d',
  '/usr/share/vulkan/icd.d',
];

/** SwiftShader's manifest as Debian's chromium-common installs it (a software Vulkan driver). */
export const SWIFTSHADER_ICD_CANDIDATES = [
  '/usr/lib/chromium/vk_swiftshader_icd.json',
  '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
];

export interface VulkanDriver {
  /** The manifest's path. */
  readonly manifest: string;
  /** The driver library it names (`ICD.library_path`). */
  readonly library: string;
  /** A software rasteriser (SwiftShader, lavapipe), by its library's name. */
  readonly software: boolean;
}

const SOFTWARE_LIBRARY = /swiftshader|lvp|lavapipe|llvmpipe/i;

function readManifest(path: string): VulkanDriver | undefined {
  try {
    const st = statSync(path);
    // A manifest is a few hundred bytes: anything else is not one (and is not read).
    if (!st.isFile() || st.size > 64 * 1024) return undefined;
    const json = JSON.parse(readFileSync(path, 'utf8')) as { ICD?: { library_path?: unknown } };
    const library = json.ICD?.library_path;
    if (typeof library !== 'string' || library === '') return undefined;
    return {
      manifest: path,
      library,
      software: SOFTWARE_LIBRARY.test(library) || SOFTWARE_LIBRARY.test(path),
    };
  } catch {
    return undefined;
  }
}

/**
 * The Vulkan drivers the loader would see: those named by VK_DRIVER_FILES / VK_ICD_FILENAMES when set (the
 * loader then looks nowhere else), otherwise the manifests in the standard folders.
 */
export function vulkanDrivers(env: Readonly<Record<string, string | undefined>>): VulkanDriver[] {
  const named = env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES;
  if (named !== undefined && named !== '') {
    return named
      .split(':')
      .filter((p) => p !== '')
      .map(readManifest)
      .filter((d): d is VulkanDriver => d !== undefined);
  }
  const out: VulkanDriver[] = [];
  for (const folder of ICD_FOLDERS) {
    let names: string[];
    try {
      names = readdirSync(folder).filter((n) => n.endsWith('.json'));
    } catch {
      continue;
    }
    for (const n of names.sort()) {
      const d = readManifest(join(folder, n));
      if (d) out.push(d);
    }
  }
  return out;
}

/** SwiftShader's manifest: RELP_SWIFTSHADER_ICD, else where Debian's Chromium puts it; undefined if absent. */
export function findSwiftShaderIcd(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const candidates = env.RELP_SWIFTSHADER_ICD ? [env.RELP_SWIFTSHADER_ICD] : SWIFTSHADER_ICD_CANDIDATES;
  return candidates.find((p) => readManifest(p) !== undefined);
}

// Where Debian and other distributions put the Vulkan loader.
const LIBVULKAN = [
  '/usr/lib/x86_64-linux-gnu/libvulkan.so.1',
  '/usr/lib/aarch64-linux-gnu/libvulkan.so.1',
  '/usr/lib/libvulkan.so.1',
  '/usr/lib64/libvulkan.so.1',
];

/**
 * Why WebGPU in Node cannot run here even when asked for, or undefined when it can: it needs the Vulkan loader
 * and a driver (a GPU's, or SwiftShader's software one from Debian's chromium-common). Tests skip on it and
 * print it.
 */
export function webgpuUnavailableReason(
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  if (!LIBVULKAN.some((p) => existsSync(p))) return 'the Vulkan loader (libvulkan1) is not installed';
  if (vulkanDrivers(env).length === 0 && findSwiftShaderIcd(env) === undefined) {
    return 'no Vulkan driver: neither a GPU driver nor SwiftShader (chromium-common) is installed';
  }
  return undefined;
}
