import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findSwiftShaderIcd, probeNodeGpu, vulkanDrivers, webgpuNodeBackendLoader } from '../src/index.js';

function manifest(dir: string, name: string, library: string): string {
  const p = join(dir, name);
  writeFileSync(
    p,
    JSON.stringify({ file_format_version: '1.0.0', ICD: { library_path: library, api_version: '1.3' } }),
  );
  return p;
}

/** A stand-in for Dawn's bindings whose one adapter reports `info`; counts how often it was loaded. */
function fakeDawn(info: Record<string, string> | null, isFallbackAdapter?: boolean) {
  const state = { loads: 0, creates: 0 };
  const loadDawn = async () => {
    state.loads++;
    return {
      globals: { GPUBufferUsage: { MAP_READ: 1 } },
      create: () => {
        state.creates++;
        return {
          requestAdapter: async () => (info === null ? null : { info, isFallbackAdapter }),
        };
      },
    };
  };
  return { state, loadDawn };
}

describe('Vulkan driver manifests', () => {
  it('reads the drivers VK_ICD_FILENAMES names and tells software ones apart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relp-icd-'));
    const sw = manifest(dir, 'sw.json', './libvk_swiftshader.so');
    const hw = manifest(dir, 'nv.json', 'libGLX_nvidia.so.0');
    writeFileSync(join(dir, 'bad.json'), '{ not json');
    const drivers = vulkanDrivers({
      VK_ICD_FILENAMES: [sw, hw, join(dir, 'bad.json'), join(dir, 'gone.json')].join(':'),
    });
    expect(drivers.map((d) => [d.library, d.software])).toEqual([
      ['./libvk_swiftshader.so', true],
      ['libGLX_nvidia.so.0', false],
    ]);
    // VK_DRIVER_FILES, the newer name, wins over the older one.
    expect(vulkanDrivers({ VK_DRIVER_FILES: hw, VK_ICD_FILENAMES: sw }).map((d) => d.software)).toEqual([
      false,
    ]);
  });

  it('refuses to read a non-regular or oversized manifest', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relp-icd-'));
    mkdirSync(join(dir, 'folder.json'));
    const big = join(dir, 'big.json');
    writeFileSync(big, `{"ICD":{"library_path":"x.so"},"pad":"${'x'.repeat(70_000)}"}`);
    expect(vulkanDrivers({ VK_ICD_FILENAMES: `${join(dir, 'folder.json')}:${big}:/dev/zero` })).toEqual([]);
  });

  it('finds SwiftShader where RELP_SWIFTSHADER_ICD says, and nothing where it is absent', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relp-icd-'));
    const sw = manifest(dir, 'sw.json', './libvk_swiftshader.so');
    expect(findSwiftShaderIcd({ RELP_SWIFTSHADER_ICD: sw })).toBe(sw);
    expect(findSwiftShaderIcd({ RELP_SWIFTSHADER_ICD: join(dir, 'none.json') })).toBeUndefined();
  });
});

describe('probing for an adapter', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relp-icd-'));
  const swIcd = manifest(dir, 'sw.json', './libvk_swiftshader.so');
  const hwIcd = manifest(dir, 'hw.json', 'libnvidia.so');

  it('automatic choice does not even load Dawn when only software drivers exist', async () => {
    const { state, loadDawn } = fakeDawn({ vendor: 'google', architecture: 'swiftshader' });
    const p = await probeNodeGpu({ explicit: false, env: { VK_ICD_FILENAMES: swIcd }, loadDawn });
    expect(p.ok).toBe(false);
    if (!p.ok) expect(p.reason).toMatch(/no hardware GPU driver.*--backend webgpu/);
    expect(state.loads).toBe(0);
  });

  it('automatic choice refuses a software adapter behind a driver that looked like hardware', async () => {
    const { loadDawn } = fakeDawn({ vendor: 'mesa', architecture: 'llvmpipe' });
    const p = await probeNodeGpu({ explicit: false, env: { VK_ICD_FILENAMES: hwIcd }, loadDawn });
    expect(p.ok).toBe(false);
    if (!p.ok) expect(p.reason).toMatch(/software.*slower than the CPU backends/);
  });

  it('takes a hardware adapter automatically and names it', async () => {
    const { loadDawn } = fakeDawn({ vendor: 'nvidia', architecture: 'hopper', description: 'H100' });
    const loader = webgpuNodeBackendLoader({ env: { VK_ICD_FILENAMES: hwIcd }, loadDawn });
    const p = await loader.probe({ explicit: false });
    expect(p).toEqual({ ok: true, detail: 'WebGPU in Node (Dawn), adapter nvidia hopper H100' });
  });

  it('takes a software adapter when asked for explicitly, and says it is software', async () => {
    const { loadDawn } = fakeDawn({ vendor: 'google', architecture: 'swiftshader' }, true);
    const loader = webgpuNodeBackendLoader({ env: { VK_ICD_FILENAMES: swIcd }, loadDawn });
    const p = await loader.probe({ explicit: true });
    expect(p.ok).toBe(true);
    if (p.ok) expect(p.detail).toMatch(/google swiftshader \(software\), for exactness checks/);
  });

  it('points the Vulkan loader at SwiftShader when asked for WebGPU with no driver installed', async () => {
    // A named manifest that does not exist: the loader would see no driver at all.
    const env: Record<string, string | undefined> = {
      RELP_SWIFTSHADER_ICD: swIcd,
      VK_ICD_FILENAMES: join(dir, 'none.json'),
    };
    const { loadDawn } = fakeDawn({ vendor: 'google', architecture: 'swiftshader' });
    const processEnv: Record<string, string | undefined> = {};
    const p = await probeNodeGpu({ explicit: true, env, loadDawn, processEnv });
    expect(p.ok).toBe(true);
    expect(env.VK_ICD_FILENAMES).toBe(swIcd);
    expect(processEnv.VK_ICD_FILENAMES).toBe(swIcd);
    // Automatic choice leaves the environment alone.
    const auto: Record<string, string | undefined> = { RELP_SWIFTSHADER_ICD: swIcd, VK_ICD_FILENAMES: '' };
    const untouched: Record<string, string | undefined> = {};
    await probeNodeGpu({ explicit: false, env: auto, loadDawn, processEnv: untouched });
    expect(auto.VK_ICD_FILENAMES).toBe('');
    expect(untouched).toEqual({});
  });

  it('says why when Dawn does not load or finds no adapter', async () => {
    const failing = async () => {
      throw new Error('libvulkan.so.1: cannot open shared object file');
    };
    const a = await probeNodeGpu({ explicit: true, env: { VK_ICD_FILENAMES: hwIcd }, loadDawn: failing });
    expect(a.ok).toBe(false);
    if (!a.ok) expect(a.reason).toMatch(/webgpu package\) did not load: libvulkan/);
    const { loadDawn } = fakeDawn(null);
    const b = await probeNodeGpu({ explicit: true, env: { VK_ICD_FILENAMES: hwIcd }, loadDawn });
    expect(b.ok).toBe(false);
    if (!b.ok) expect(b.reason).toMatch(/no WebGPU adapter among the Vulkan drivers libnvidia\.so/);
  });

  it('refuses to register before a successful probe', async () => {
    await expect(webgpuNodeBackendLoader().register()).rejects.toThrow(/after a successful probe/);
  });
});
