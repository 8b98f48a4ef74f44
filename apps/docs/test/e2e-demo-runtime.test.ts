/**
 * End-to-end, the demo's runtime in Chromium: Cancel stops a computing run at once; "auto" passes over a software
 * WebGPU adapter and says so once; the default real model is downloaded (from a local stand-in of the hub) with
 * its size shown first, a progress bar, and the browser cache the second time; the site is cross-origin isolated
 * by its headers or, without them, by its service worker, so WASM runs on several threads; results of an earlier
 * run are marked stale; the built page opened from disk says how to serve it; the GGUF picker names every
 * architecture a family runs.
 */
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_MODEL, runnableGgufArchitectures } from '@relp/web';
import { GGUF_SUPPORTED_ARCHITECTURES } from '@relp/weights';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { tinyLlamaGguf } from '../scripts/tiny-gguf.js';
import {
  artifacts,
  CHROMIUM,
  FLAGS,
  gotoPage,
  TINY_MODEL_OPTION,
  WEBGPU_FLAGS,
  webgpuAdapter,
} from './demo-helpers.js';
import { serveStatic } from './static-server.js';

const haveChromium = existsSync(CHROMIUM);
const ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};
const FINISHED = 'body[data-state="done"], body[data-state="error"], body[data-state="cancelled"]';

/** Typed pairs in words the tiny GGUF vocabulary spells as one token each. */
const GGUF_PAIR =
  'When John and Mary went to the store, Mary gave a bag to | When John and Mary went to the store, John gave a bag to | John | Mary';

async function open(page: Page, url: string): Promise<void> {
  await page.setViewportSize({ width: 1280, height: 900 });
  await gotoPage(page, url);
  await page.waitForSelector('#backend-status[data-backend], #error:not([hidden])', { timeout: 90_000 });
}

describe.skipIf(!haveChromium)('the demo’s runtime in Chromium', () => {
  const requests: string[] = [];
  let site: Awaited<ReturnType<typeof serveStatic>>;
  let isolatedSite: Awaited<ReturnType<typeof serveStatic>>;
  let browser: Browser;
  let dist: string;
  let ggufBytes: number;
  const hubPath = `/test-hub/${DEFAULT_MODEL.repo}/resolve/${DEFAULT_MODEL.revision}/${DEFAULT_MODEL.file}`;

  beforeAll(async () => {
    mkdirSync(artifacts, { recursive: true });
    dist = inject('dist');
    // A stand-in for the hub: the tiny GGUF under the default model's repository path.
    const hub = join(artifacts, 'test-hub');
    const folder = join(hub, DEFAULT_MODEL.repo, 'resolve', DEFAULT_MODEL.revision);
    mkdirSync(folder, { recursive: true });
    const bytes = tinyLlamaGguf();
    ggufBytes = bytes.length;
    writeFileSync(join(folder, DEFAULT_MODEL.file), bytes);
    site = await serveStatic(dist, {
      mounts: { '/test-hub/': hub },
      onRequest: (method, path) => requests.push(`${method} ${path}`),
    });
    isolatedSite = await serveStatic(dist, { headers: ISOLATION });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await site?.close();
    await isolatedSite?.close();
  });

  it('Cancel stops a long computing run within 2 s, and a new run then works', async () => {
    const page = await browser.newPage();
    await open(page, `${site.url}demo.html?backend=wasm&model=${encodeURIComponent(TINY_MODEL_OPTION)}`);
    // 512 IOI prompts with activation patching: tens of seconds of computation on WASM.
    await page.selectOption('#task-select', 'ioi');
    await page.fill('#task-n', '512');
    await page.click('#run');
    await page.waitForFunction(
      () =>
        /activation-patching|atp|relp/.test(document.getElementById('progress-text')?.dataset.stage ?? ''),
      undefined,
      { timeout: 60_000 },
    );
    await page.waitForTimeout(500);
    const t0 = Date.now();
    await page.click('#cancel');
    await page.waitForSelector(FINISHED, { timeout: 30_000 });
    const seconds = (Date.now() - t0) / 1000;
    await page.screenshot({ path: join(artifacts, 'demo-cancelled.png') });
    expect(await page.getAttribute('body', 'data-state')).toBe('cancelled');
    expect(await page.textContent('#progress-text')).toMatch(/^cancelled after/);
    expect(seconds).toBeLessThan(2);
    // The fresh worker runs the next request.
    await page.selectOption('#task-select', 'ioi-demo');
    await page.click('#run');
    await page.waitForSelector(FINISHED, { timeout: 120_000 });
    expect(await page.getAttribute('body', 'data-state'), (await page.textContent('#error')) ?? '').toBe(
      'done',
    );
    await page.close();
  }, 240_000);

  it('marks the results of an earlier run stale during a new run and after an error', async () => {
    const page = await browser.newPage();
    await open(page, `${site.url}demo.html?backend=wasm&model=${encodeURIComponent(TINY_MODEL_OPTION)}`);
    await page.click('#run');
    await page.waitForSelector(FINISHED, { timeout: 120_000 });
    expect(await page.getAttribute('#results', 'data-stale')).toBeNull();
    expect(await page.isVisible('#stale-note')).toBe(false);
    // A second, long run: the first run's results are marked while it goes.
    await page.selectOption('#task-select', 'ioi');
    await page.fill('#task-n', '256');
    await page.click('#run');
    await page.waitForSelector('#results[data-stale]', { timeout: 5_000 });
    expect(await page.textContent('#stale-note')).toMatch(/^stale: from the previous run/);
    expect(await page.isVisible('#stale-note')).toBe(true);
    await page.screenshot({ path: join(artifacts, 'demo-stale-running.png'), fullPage: true });
    await page.click('#cancel');
    await page.waitForSelector(FINISHED, { timeout: 30_000 });
    // A run that fails (pairs of unequal token lengths): the old results stay marked.
    await page.selectOption('#task-select', 'typed');
    await page.fill(
      '#pairs-text',
      'When Mary went to the store, Mary gave a bag to | When Bartholomew went to the store, Bartholomew gave a bag to | John | Mary',
    );
    await page.click('#run');
    await page.waitForSelector('body[data-state="error"]', { timeout: 60_000 });
    expect(await page.getAttribute('#results', 'data-stale')).toBe('true');
    expect(await page.textContent('#stale-note')).toMatch(/the last run failed/);
    const opacity = await page.$eval('#heatmaps', (el) => Number(getComputedStyle(el).opacity));
    expect(opacity).toBeLessThan(1);
    await page.close();
  }, 240_000);

  it('downloads the default model with its size shown first and a progress bar, then reads it from the cache', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const url = `${site.url}demo.html?backend=wasm&hub=${encodeURIComponent(`${site.url}test-hub`)}`;
    await open(page, url);
    expect(await page.inputValue('#model-select')).toBe('default');
    await page.waitForFunction(() => /MB/.test(document.getElementById('model-note')?.textContent ?? ''));
    const before = (await page.textContent('#model-note')) ?? '';
    expect(before).toMatch(/real weights/);
    expect(before).toContain(`downloads ${(ggufBytes / 1e6).toFixed(1)} MB`);
    // Record what the progress bar shows.
    await page.evaluate(() => {
      const bar = document.getElementById('progress') as HTMLProgressElement;
      const text = document.getElementById('progress-text')!;
      const seen: string[] = [];
      (window as unknown as { seen: string[] }).seen = seen;
      new MutationObserver(() =>
        seen.push(`${text.dataset.stage}|${bar.getAttribute('value')}|${bar.max}|${text.textContent}`),
      ).observe(text, { childList: true, characterData: true, subtree: true, attributes: true });
    });
    await page.selectOption('#task-select', 'typed');
    await page.fill('#pairs-text', GGUF_PAIR);
    await page.uncheck('input[name=method][value="activation-patching"]');
    await page.click('#run');
    await page.waitForSelector(FINISHED, { timeout: 120_000 });
    expect(await page.getAttribute('body', 'data-state'), (await page.textContent('#error')) ?? '').toBe(
      'done',
    );
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    const downloads = seen.filter((s) => s.startsWith('download|') && s.includes('downloading'));
    expect(downloads.length, seen.join('\n')).toBeGreaterThan(0);
    expect(downloads.at(-1)).toContain(`|${ggufBytes}|${ggufBytes}|`);
    expect(requests.filter((r) => r === `GET ${hubPath}`)).toHaveLength(1);
    expect(await page.textContent('#summary')).toMatch(/hub QuantFactory\/SmolLM2-135M-Instruct-GGUF/);
    // A new visit: the note says cached, and the run reads the file from the cache, not the server.
    const again = await context.newPage();
    await open(again, url);
    await again.waitForSelector('#model-note[data-cached="true"]', { timeout: 10_000 });
    expect(await again.textContent('#model-note')).toMatch(/in this browser's cache/);
    await again.screenshot({ path: join(artifacts, 'demo-default-model-cached.png') });
    await again.selectOption('#task-select', 'typed');
    await again.fill('#pairs-text', GGUF_PAIR);
    await again.click('#run');
    await again.waitForSelector(FINISHED, { timeout: 120_000 });
    expect(await again.getAttribute('body', 'data-state')).toBe('done');
    expect(requests.filter((r) => r === `GET ${hubPath}`)).toHaveLength(1);
    await context.close();
  }, 240_000);

  // Opt-in (a real 98 MB model, minutes on two cores): RELP_E2E_SMOLLM2=<path of SmolLM2-135M-Instruct.Q4_1.gguf>
  // (pnpm relp models fetch smollm2-135m), served as the hub's file: the default model's whole path, on the
  // real weights, with the isolation headers (multi-threaded WASM).
  const smollm2 = process.env.RELP_E2E_SMOLLM2;
  it.runIf(smollm2 !== undefined && existsSync(smollm2))(
    'runs AtP and RelP on the default model (the real SmolLM2-135M file, from a hub mirror)',
    async () => {
      const hub = join(artifacts, 'smollm2-hub');
      const folder = join(hub, DEFAULT_MODEL.repo, 'resolve', DEFAULT_MODEL.revision);
      mkdirSync(folder, { recursive: true });
      const target = join(folder, DEFAULT_MODEL.file);
      if (!existsSync(target)) symlinkSync(smollm2!, target);
      const mirror = await serveStatic(dist, { headers: ISOLATION, mounts: { '/test-hub/': hub } });
      try {
        const page = await browser.newPage();
        await open(page, `${mirror.url}demo.html?hub=${encodeURIComponent(`${mirror.url}test-hub`)}`);
        expect(await page.textContent('#model-note')).toMatch(/downloads 98\.4 MB/);
        await page.uncheck('input[name=method][value="activation-patching"]');
        const t0 = Date.now();
        await page.click('#run');
        await page.waitForSelector(FINISHED, { timeout: 580_000 });
        const seconds = (Date.now() - t0) / 1000;
        await page.screenshot({ path: join(artifacts, 'demo-smollm2-default.png'), fullPage: true });
        expect(await page.getAttribute('body', 'data-state'), (await page.textContent('#error')) ?? '').toBe(
          'done',
        );
        const summary = (await page.textContent('#summary')) ?? '';
        expect(summary).toMatch(/llama, 30 layers, d 576/);
        console.log(`[docs e2e] SmolLM2-135M default model: ${seconds.toFixed(1)} s in the page; ${summary}`);
        await page.close();
      } finally {
        await mirror.close();
      }
    },
    600_000,
  );

  it('runs WASM on several threads when the host sends the isolation headers', async () => {
    const page = await browser.newPage();
    await open(
      page,
      `${isolatedSite.url}demo.html?backend=wasm&model=${encodeURIComponent(TINY_MODEL_OPTION)}`,
    );
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    expect(await page.evaluate(() => navigator.serviceWorker.controller)).toBeNull();
    expect(Number(await page.getAttribute('#backend-status', 'data-threads'))).toBeGreaterThan(1);
    expect(await page.textContent('#backend-status')).toMatch(/WASM \(\d+ threads, SIMD\)/);
    await page.click('#run');
    await page.waitForSelector(FINISHED, { timeout: 120_000 });
    expect(await page.getAttribute('body', 'data-state'), (await page.textContent('#error')) ?? '').toBe(
      'done',
    );
    await page.close();
  }, 180_000);

  it('without the headers, its service worker isolates the page after one reload', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    let loads = 0;
    page.on('load', () => {
      loads += 1;
    });
    await open(page, `${site.url}demo.html?backend=wasm&model=${encodeURIComponent(TINY_MODEL_OPTION)}`);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    expect(await page.evaluate(() => navigator.serviceWorker.controller?.scriptURL)).toMatch(/coi-sw\.js$/);
    expect(loads).toBe(2);
    expect(Number(await page.getAttribute('#backend-status', 'data-threads'))).toBeGreaterThan(1);
    await context.close();
  }, 120_000);

  it('where neither headers nor the service worker can isolate the page, the status says why WASM has one thread', async () => {
    const context = await browser.newContext({ serviceWorkers: 'block' });
    const page = await context.newPage();
    await open(page, `${site.url}demo.html?backend=wasm&model=${encodeURIComponent(TINY_MODEL_OPTION)}`);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
    const text = (await page.textContent('#backend-status')) ?? '';
    expect(await page.getAttribute('#backend-status', 'data-threads')).toBe('1');
    expect(text).toMatch(/WASM \(1 thread, SIMD: the page is not cross-origin isolated\)/);
    expect(text).toMatch(
      /Why one thread: the host sends no COOP\/COEP headers, and (the isolation service worker|this browser registered no service worker)/,
    );
    await page.locator('.status').screenshot({ path: join(artifacts, 'demo-not-isolated.png') });
    await context.close();
  }, 120_000);

  it('says once why "auto" passes over a software WebGPU adapter, runs on it only when asked, and cancels there too', async (ctx) => {
    const gpu = await chromium.launch({ executablePath: CHROMIUM, args: [...FLAGS, ...WEBGPU_FLAGS] });
    try {
      const page = await gpu.newPage();
      await page.goto(`${isolatedSite.url}demo.html`);
      const adapter = await webgpuAdapter(page);
      if (adapter !== 'ok') {
        console.warn(`[docs e2e] WebGPU unavailable in this Chromium: ${adapter}`);
        ctx.skip();
        return;
      }
      await open(page, `${isolatedSite.url}demo.html?model=${encodeURIComponent(TINY_MODEL_OPTION)}`);
      const auto = (await page.textContent('#backend-status')) ?? '';
      await page
        .locator('.status')
        .screenshot({ path: join(artifacts, 'demo-backend-software-adapter.png') });
      expect(await page.getAttribute('#backend-status', 'data-backend')).toBe('wasm');
      expect(auto).toMatch(/WebGPU adapter is software \([^)]*swiftshader[^)]*\), slower than WASM/i);
      expect(auto.match(/software/g)).toHaveLength(1);
      await open(
        page,
        `${isolatedSite.url}demo.html?backend=webgpu&model=${encodeURIComponent(TINY_MODEL_OPTION)}`,
      );
      expect(await page.getAttribute('#backend-status', 'data-backend')).toBe('webgpu');
      // Cancel stops a computing WebGPU run as it does a WASM one.
      await page.selectOption('#task-select', 'ioi');
      await page.fill('#task-n', '128');
      await page.click('#run');
      await page.waitForFunction(
        () =>
          /activation-patching|atp|relp/.test(document.getElementById('progress-text')?.dataset.stage ?? ''),
        undefined,
        { timeout: 60_000 },
      );
      await page.waitForTimeout(500);
      const t0 = Date.now();
      await page.click('#cancel');
      await page.waitForSelector(FINISHED, { timeout: 30_000 });
      expect(await page.getAttribute('body', 'data-state')).toBe('cancelled');
      expect((Date.now() - t0) / 1000).toBeLessThan(2);
    } finally {
      await gpu.close();
    }
  }, 120_000);

  it('names a missing adapter once', async () => {
    const page = await browser.newPage();
    await open(page, `${site.url}demo.html?model=${encodeURIComponent(TINY_MODEL_OPTION)}`);
    const text = (await page.textContent('#backend-status')) ?? '';
    expect(text.match(/adapter/g) ?? [], text).toHaveLength(1);
    await page.close();
  }, 60_000);

  it('lists every GGUF architecture a model family runs in the file picker', async () => {
    const page = await browser.newPage();
    await open(page, `${isolatedSite.url}demo.html?model=gguf`);
    const label = (await page.textContent('#gguf-architectures')) ?? '';
    const expected = runnableGgufArchitectures(GGUF_SUPPORTED_ARCHITECTURES);
    expect(expected).toEqual(expect.arrayContaining(['llama', 'qwen2', 'gemma3']));
    for (const arch of expected) expect(label).toContain(arch);
    await page.close();
  }, 60_000);

  it('opened from disk, the page is styled and says to serve the folder', async () => {
    const page = await browser.newPage();
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(pathToFileURL(join(dist, 'demo.html')).href);
    await page.waitForSelector('#no-server:not([hidden])', { timeout: 10_000 });
    expect(await page.textContent('#no-server')).toMatch(/python3 -m http\.server/);
    // The site stylesheet applies (the header is a flex row only when it loaded).
    expect(await page.$eval('header.site', (el) => getComputedStyle(el).display)).toBe('flex');
    await page.screenshot({ path: join(artifacts, 'demo-from-file.png') });
    await page.close();
  }, 60_000);
});
