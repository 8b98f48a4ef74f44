/**
 * The agreement table, heatmap and scatter plot on a phone and by keyboard: at 390 px nothing scrolls the page
 * sideways; the heatmap is an image with a summary, a data table and keyboard-focusable cells read out as they are
 * focused; the scatter plot has round tick values on both axes.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ComponentPages, componentPages } from './component-page.js';
import { artifacts, CHROMIUM } from './demo-helpers.js';

const SITES = ['resid_pre', 'attn_out', 'mlp_out'];
const METHODS = ['atp', 'relp', 'relp-ah', 'integrated-gradients'];
const TOKENS = ['When', ' Mary', ' and', ' John', ' went', ' to', ' the', ' store', ',', ' John', ' gave'];
const grid = (layers: number, k: number) =>
  Array.from({ length: layers }, (_, l) =>
    Array.from({ length: TOKENS.length }, (_, p) => Math.sin(l * 1.7 + p * 0.9 + k) * (k + 1) * 0.01),
  );

/** Renders the demo's results block: the agreement table, one heatmap per site, one scatter. */
function renderAll(page: Page, layers: number): Promise<void> {
  return page.evaluate(
    ({ sites, methods, tokens, layers, grids }) => {
      const c = (window as unknown as { relpComponents: typeof import('@relp/web') }).relpComponents;
      const host = document.getElementById('host')!;
      c.renderCorrelationTable(
        host,
        methods.flatMap((method, i) =>
          sites.map((site) => ({
            method,
            site,
            agreement: {
              pearson: 0.9 - i * 0.1,
              spearman: 0.8,
              topK: 0.7,
              signAgreement: 0.9,
              k: 10,
              n: 330,
            },
          })),
        ) as never,
      );
      for (const [i, site] of sites.entries()) {
        c.renderHeatmap(host, {
          grid: grids[i]!,
          tokens,
          title: `relp · ${site}`,
          attrs: { 'data-site': site },
        });
      }
      c.renderScatter(host, {
        reference: grids[0]!,
        tokens,
        title: `${sites[0]}: estimate vs activation patching`,
        series: [{ label: 'relp', grid: grids[1]! }],
      });
      void layers;
    },
    { sites: SITES, methods: METHODS, tokens: TOKENS, layers, grids: SITES.map((_, i) => grid(layers, i)) },
  );
}

const haveChromium = existsSync(CHROMIUM);

describe.skipIf(!haveChromium)('plots on a phone and by keyboard', () => {
  let pages: ComponentPages;
  beforeAll(async () => {
    mkdirSync(artifacts, { recursive: true });
    pages = await componentPages();
  });
  afterAll(async () => {
    await pages?.close();
  });

  it('at 390 px the page does not scroll sideways; the agreement table scrolls in its own box', async () => {
    const page = await pages.open(390, 844);
    await renderAll(page, 30);
    const m = await page.evaluate(() => {
      const table = document.querySelector('table.relp-correlation')!;
      return {
        scrollWidth: document.scrollingElement!.scrollWidth,
        tableWidth: table.getBoundingClientRect().width,
        boxScroll: table.parentElement!.scrollWidth > table.parentElement!.clientWidth,
      };
    });
    await page.screenshot({ path: join(artifacts, 'plots-390.png') });
    expect(m.tableWidth).toBeGreaterThan(390);
    expect(m.boxScroll).toBe(true);
    expect(m.scrollWidth).toBeLessThanOrEqual(390);
    // The scatter plot shrinks to the screen as a whole, its tick labels still legible.
    const scatter = await page.evaluate(() => {
      const svg = document.querySelector('figure.relp-scatter svg') as SVGSVGElement;
      const tick = svg.querySelector('text.tick') as SVGTextElement;
      return {
        width: svg.getBoundingClientRect().width,
        box: (svg.parentElement as HTMLElement).clientWidth,
        font: Number.parseFloat(getComputedStyle(tick).fontSize) * tick.getScreenCTM()!.a,
      };
    });
    expect(scatter.width).toBeLessThanOrEqual(scatter.box + 0.5);
    expect(scatter.font).toBeGreaterThanOrEqual(10);
    await page.close();
  });

  it('the heatmap is an image with a summary and a data table; its cells take focus and arrow keys', async () => {
    const page = await pages.open(1280);
    await renderAll(page, 6);
    const fig = page.locator('figure.relp-heatmap[data-site="attn_out"]');
    const label = (await fig.locator('svg').getAttribute('aria-label')) ?? '';
    expect(await fig.locator('svg').getAttribute('role')).toBe('img');
    expect(label).toContain('6 layers × 11 positions');
    const values = grid(6, 1).flat();
    const peak = values.reduce((a, b) => (Math.abs(b) > Math.abs(a) ? b : a));
    expect(label).toMatch(/largest \|value\| \S+ at L\d+, position \d+/);
    // The text alternative holds every value.
    const tableValues = await fig
      .locator('details.relp-data td[data-value]')
      .evaluateAll((tds) => tds.map((td) => Number((td as HTMLElement).dataset.value)));
    expect(tableValues).toEqual(values);
    expect(values).toContain(peak);

    // Tab from the table of agreement into the heatmaps: one tab stop per heatmap, the top-left cell first.
    await fig.locator('rect[data-value]').first().focus();
    const focused = () =>
      page.evaluate(() => {
        const r = document.activeElement as SVGRectElement;
        return {
          layer: Number(r.dataset.layer),
          position: Number(r.dataset.position),
          value: Number(r.dataset.value),
        };
      });
    const readout = fig.locator('[aria-live]');
    expect(await focused()).toMatchObject({ layer: 0, position: 0 });
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowDown');
    const f = await focused();
    expect(f).toMatchObject({ layer: 1, position: 2 });
    expect(f.value).toBe(values[1 * 11 + 2]);
    expect(await readout.textContent()).toBe(`L1, position 2 " and": ${f.value.toPrecision(6)}`);
    await expect.poll(() => fig.locator('.relp-tooltip').isVisible()).toBe(true);
    await page.keyboard.press('End');
    expect(await focused()).toMatchObject({ layer: 1, position: 10 });
    await page.keyboard.press('PageDown');
    expect(await focused()).toMatchObject({ layer: 5, position: 10 });
    await page.keyboard.press('ArrowDown');
    expect(await focused()).toMatchObject({ layer: 5, position: 10 });
    await fig.screenshot({ path: join(artifacts, 'heatmap-keyboard.png') });
    // Only the focused cell is in the tab order.
    expect(await fig.locator('rect[tabindex="0"]').count()).toBe(1);
    await page.close();
  });

  it('the scatter plot has round ticks on both axes at their values', async () => {
    const page = await pages.open(1280);
    await renderAll(page, 6);
    for (const axis of ['x', 'y'] as const) {
      const ticks = await page.locator(`figure.relp-scatter text.tick.${axis}`).evaluateAll(
        (ts, axis) =>
          ts.map((t) => ({
            value: Number((t as SVGTextElement).dataset.value),
            shown: Number(t.textContent!.replace('−', '-')),
            at: Number(t.getAttribute(axis)),
          })),
        axis,
      );
      expect(ticks.length).toBeGreaterThanOrEqual(3);
      const step = ticks[1]!.value - ticks[0]!.value;
      const mantissa = step / 10 ** Math.floor(Math.log10(step));
      expect([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-9)).toBe(true);
      for (const [i, t] of ticks.entries()) {
        expect(t.shown).toBeCloseTo(t.value, 12);
        expect(t.value / step).toBeCloseTo(Math.round(t.value / step), 9);
        // Evenly spaced on screen: the axis is linear.
        expect(t.at - ticks[0]!.at).toBeCloseTo(
          ((ticks[1]!.at - ticks[0]!.at) * (t.value - ticks[0]!.value)) / step,
          6,
        );
        if (i > 0) expect(t.value).toBeGreaterThan(ticks[i - 1]!.value);
      }
    }
    await page.locator('figure.relp-scatter').screenshot({ path: join(artifacts, 'scatter-ticks.png') });
    await page.close();
  });
});
