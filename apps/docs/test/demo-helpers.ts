/** What the end-to-end tests share: the Chromium they drive, driving the demo, and comparing with Node. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AttributionResult, SiteName } from '@relp/core';
import type { Page } from 'playwright-core';
import { expect } from 'vitest';

export const CHROMIUM = '/usr/bin/chromium';
/** The demo's model menu entry of the tiny random GPT-2 the site serves. */
export const TINY_MODEL_OPTION = 'site:relp-test/tiny-gpt2';
const here = dirname(fileURLToPath(import.meta.url));
export const repo = join(here, '..', '..', '..');
export const artifacts = join(repo, 'test-artifacts', 'docs-e2e');

export const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu-sandbox',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * WebGPU on SwiftShader (`--enable-unsafe-webgpu`). The SwiftShader compositor flags make tfjs-webgpu's
 * canvas-based synchronous reads work at all (without them the first one fails); the Vulkan SwiftShader path
 * was the faster of the two tried here.
 */
export const WEBGPU_FLAGS = [
  '--enable-unsafe-webgpu',
  '--enable-unsafe-swiftshader',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
];

/** 'ok' when the page's navigator.gpu gives an adapter, else why not. */
export async function webgpuAdapter(page: Page): Promise<string> {
  const ask = () =>
    page.evaluate(async () => {
      const gpu = (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
      if (!gpu) return 'no navigator.gpu';
      return (await gpu.requestAdapter()) ? 'ok' : 'requestAdapter() returned null';
    });
  // The demo reloads itself once where the host sends no isolation headers (its service worker): ask again then.
  for (let attempt = 0; ; attempt++) {
    try {
      return await ask();
    } catch (e) {
      if (attempt >= 2 || !/Execution context was destroyed/.test(String(e))) throw e;
      await page.waitForLoadState('load');
    }
  }
}

/**
 * `page.goto`, once more when the page's own reload aborted it: without isolation headers the demo registers its
 * service worker and reloads once, which cancels a navigation the test started meanwhile.
 */
export async function gotoPage(page: Page, url: string): Promise<void> {
  try {
    await page.goto(url);
  } catch (e) {
    if (!/ERR_ABORTED|interrupted by another navigation/.test(String(e))) throw e;
    await page.goto(url);
  }
}

export interface Shown {
  backend: string;
  backendText: string;
  grids: Record<string, Record<string, number[]>>;
  correlations: Record<string, Record<string, number>>;
  /** The run's output as the page received it (token labels, model summary). */
  tokens: string[];
  model: { architecture: string; nLayers: number; dModel: number; vocabSize: number; source: string };
  modelTokenizer: string | undefined;
  summaryText: string;
}

/**
 * Opens the demo with `?backend=`, lets `prepare` fill the form (model, task, methods), runs it, keeps a
 * screenshot of the page and of one hovered heatmap, and reads back every number shown.
 */
export async function runDemo(
  page: Page,
  url: string,
  backend: string,
  shot: string,
  prepare?: (page: Page) => Promise<void>,
): Promise<Shown> {
  const logs: string[] = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  await page.setViewportSize({ width: 1280, height: 900 });
  // The tiny test model (the page's default is a real model from the hub, which tests cannot reach).
  await gotoPage(page, `${url}demo.html?backend=${backend}&model=${encodeURIComponent(TINY_MODEL_OPTION)}`);
  await page.waitForSelector('#backend-status[data-backend], #error:not([hidden])', { timeout: 60_000 });
  // The page has settled (its isolation reload, if any, is behind it). A reload racing the navigation above once
  // left the default hub model selected: choose the tiny model in the menu itself when the query did not.
  if ((await page.inputValue('#model-select')) !== TINY_MODEL_OPTION) {
    await page.selectOption('#model-select', TINY_MODEL_OPTION);
  }
  await prepare?.(page);
  await page.click('#run');
  await page.waitForSelector(
    'body[data-state="done"], body[data-state="error"], body[data-state="cancelled"]',
    {
      timeout: 180_000,
    },
  );
  const state = await page.getAttribute('body', 'data-state');
  await page.screenshot({ path: join(artifacts, `${shot}.png`), fullPage: true });
  if (state !== 'done') {
    const err = await page.textContent('#error');
    throw new Error(`the demo failed on ${backend}: ${err}\n${logs.join('\n')}`);
  }
  // Hover one heatmap cell so the tooltip shows in a second screenshot.
  const relp = page.locator('figure.relp-heatmap[data-method="relp"][data-site="mlp_out"]');
  const figure = (await relp.count()) > 0 ? relp : page.locator('figure.relp-heatmap').first();
  await figure.locator('rect[data-value]').nth(3).hover();
  await figure.screenshot({ path: join(artifacts, `${shot}-hover.png`) });
  return readShown(page);
}

/** Every heatmap cell (`data-value`), Pearson correlation and the run's summary, as the page shows them. */
export function readShown(page: Page): Promise<Shown> {
  return page.evaluate(() => {
    const grids: Record<string, Record<string, number[]>> = {};
    for (const fig of document.querySelectorAll<HTMLElement>('figure.relp-heatmap')) {
      const m = fig.dataset.method!;
      const s = fig.dataset.site!;
      grids[m] ??= {};
      grids[m][s] = [...fig.querySelectorAll<SVGRectElement>('rect[data-value]')].map((r) =>
        Number(r.dataset.value),
      );
    }
    const correlations: Record<string, Record<string, number>> = {};
    for (const td of document.querySelectorAll<HTMLElement>(
      'table.relp-correlation td[data-stat="pearson"]',
    )) {
      correlations[td.dataset.method!] ??= {};
      correlations[td.dataset.method!]![td.dataset.site!] = Number(td.dataset.value);
    }
    const status = document.getElementById('backend-status')!;
    const out = (
      window as unknown as {
        relpOutput: { tokens: string[]; model: Shown['model'] & { tokenizer?: string } };
      }
    ).relpOutput;
    return {
      backend: status.dataset.backend ?? '',
      backendText: status.textContent ?? '',
      grids,
      correlations,
      tokens: [...out.tokens],
      model: {
        architecture: out.model.architecture,
        nLayers: out.model.nLayers,
        dModel: out.model.dModel,
        vocabSize: out.model.vocabSize,
        source: out.model.source,
      },
      modelTokenizer: out.model.tokenizer,
      summaryText: document.getElementById('summary')?.textContent ?? '',
    };
  });
}

export interface NodeResults {
  results: Record<string, AttributionResult>;
  pearson: Record<string, Record<string, number>>;
}

/**
 * Checks the page's numbers against Node's: for each method and site, the largest |browser − node| relative to
 * the grid's largest |value| is at most `tolerance`, and each Pearson correlation with activation patching
 * (when it ran) is within 100 × tolerance. Returns the differences for the report.
 */
export function compareWithNode(
  shown: Shown,
  reference: NodeResults,
  label: string,
  tolerance: number,
  methods: readonly string[],
  sites: readonly SiteName[],
): Record<string, unknown> {
  const diffs: Record<string, Record<string, { maxAbsDiff: number; maxAbs: number; cells: number }>> = {};
  for (const m of methods) {
    diffs[m] = {};
    for (const s of sites) {
      const node = reference.results[m]!.scores[s] as number[][];
      const flat = node.flat();
      const got = shown.grids[m]?.[s];
      expect(got, `${label}: heatmap ${m}/${s} missing`).toBeDefined();
      expect(got!.length).toBe(flat.length);
      const maxAbs = Math.max(...flat.map(Math.abs));
      const maxAbsDiff = Math.max(...flat.map((v, i) => Math.abs(v - got![i]!)));
      diffs[m]![s] = { maxAbsDiff, maxAbs, cells: flat.length };
    }
  }
  const estimates = methods.includes('activation-patching')
    ? methods.filter((m) => m !== 'activation-patching')
    : [];
  const pearson: Record<string, Record<string, { browser: number; node: number }>> = {};
  for (const m of estimates) {
    pearson[m] = {};
    for (const s of sites) {
      pearson[m]![s] = { browser: shown.correlations[m]?.[s] ?? Number.NaN, node: reference.pearson[m]![s]! };
    }
  }
  for (const m of methods) {
    for (const s of sites) {
      const d = diffs[m]![s]!;
      expect(
        d.maxAbsDiff,
        `${label} ${m}/${s}: max |browser − node| ${d.maxAbsDiff} vs max |score| ${d.maxAbs}`,
      ).toBeLessThanOrEqual(tolerance * Math.max(d.maxAbs, 1e-6));
    }
  }
  for (const m of estimates) {
    for (const s of sites) {
      const p = pearson[m]![s]!;
      expect(Math.abs(p.browser - p.node), `${label} Pearson ${m}/${s}`).toBeLessThanOrEqual(100 * tolerance);
    }
  }
  return { backend: shown.backend, backendText: shown.backendText, diffs, pearson };
}
