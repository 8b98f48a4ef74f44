/**
 * The circuit graph on a real model's depth (30 layers, 9 heads): it fills its box, refits when the box changes,
 * zooms about the centre (buttons) and the cursor (wheel), pans by dragging, shows scores on hover, lists a
 * clicked node's edges, and stays inside a 390 px phone screen with labels of at least 10 screen pixels.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ComponentPages, componentPages } from './component-page.js';
import { artifacts, CHROMIUM } from './demo-helpers.js';

const N_LAYERS = 30;
const N_HEADS = 9;

/** A seeded edge circuit: edges into heads' q/k/v, MLPs and the logits from earlier nodes, scores of both signs. */
function syntheticEdges(): { from: string; to: string; score: number }[] {
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const upstream = (before: number): string => {
    const l = Math.floor(rand() * (before + 1)) - 1;
    if (l < 0) return 'input';
    return rand() < 0.25 ? `m${l}` : `a${l}.h${Math.floor(rand() * N_HEADS)}`;
  };
  const edges: { from: string; to: string; score: number }[] = [];
  const seen = new Set<string>();
  for (let l = 0; l < N_LAYERS; l++) {
    for (let i = 0; i < 7; i++) {
      const to =
        rand() < 0.3 ? `m${l}` : `a${l}.h${Math.floor(rand() * N_HEADS)}<${'qkv'[Math.floor(rand() * 3)]}>`;
      const from = to.startsWith('m')
        ? rand() < 0.5
          ? `a${l}.h${Math.floor(rand() * N_HEADS)}`
          : upstream(l)
        : upstream(l);
      if (seen.has(`${from}>${to}`)) continue;
      seen.add(`${from}>${to}`);
      edges.push({ from, to, score: (rand() - 0.45) * 2 ** (rand() * 6 - 3) });
    }
  }
  for (let i = 0; i < 6; i++) edges.push({ from: upstream(N_LAYERS), to: 'logits', score: rand() + 0.1 });
  return edges;
}

interface Box {
  left: number;
  right: number;
  top: number;
  bottom: number;
  vpLeft: number;
  vpRight: number;
  vpWidth: number;
}

/** The union of the nodes' boxes and the viewport's, in CSS px. */
const nodesBox = (page: Page): Promise<Box> =>
  page.evaluate(() => {
    const vp = document.querySelector('.relp-circuit-viewport')!.getBoundingClientRect();
    const rects = Array.from(document.querySelectorAll('.relp-circuit .node circle')).map((c) =>
      c.getBoundingClientRect(),
    );
    return {
      left: Math.min(...rects.map((r) => r.left)),
      right: Math.max(...rects.map((r) => r.right)),
      top: Math.min(...rects.map((r) => r.top)),
      bottom: Math.max(...rects.map((r) => r.bottom)),
      vpLeft: vp.left,
      vpRight: vp.right,
      vpWidth: vp.width,
    };
  });

/** Centre of a node on screen. */
const nodeAt = (page: Page, id: string) =>
  page.evaluate((id) => {
    const r = document.querySelector(`.relp-circuit .node[data-id="${id}"] circle`)!.getBoundingClientRect();
    return { x: r.left + r.width / 2, y: r.top + r.height / 2 };
  }, id);

const frames = (page: Page) =>
  page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

async function render(
  page: Page,
  edges: ReturnType<typeof syntheticEdges>,
  hostWidth?: number,
): Promise<void> {
  await page.evaluate(
    ({ edges, nLayers, nHeads, hostWidth }) => {
      const c = (window as unknown as { relpComponents: typeof import('@relp/web') }).relpComponents;
      const host = document.getElementById('host')!;
      if (hostWidth) host.style.width = `${hostWidth}px`;
      c.renderCircuitGraph(host, c.edgeCircuitGraph(edges, { nLayers, nHeads }));
    },
    { edges, nLayers: N_LAYERS, nHeads: N_HEADS, hostWidth },
  );
  await frames(page);
}

/** The number after "score " in a tooltip (4 significant digits). */
function shownScore(text: string | null): number {
  const m = /score (\S+)/.exec(text ?? '');
  expect(m, `no score in ${JSON.stringify(text)}`).not.toBeNull();
  return Number(m![1]!.replace('−', '-'));
}

const haveChromium = existsSync(CHROMIUM);

describe.skipIf(!haveChromium)('circuit graph at 30 layers', () => {
  let pages: ComponentPages;
  const edges = syntheticEdges();

  beforeAll(async () => {
    mkdirSync(artifacts, { recursive: true });
    pages = await componentPages();
  });
  afterAll(async () => {
    await pages?.close();
  });

  it('fills the width on load, refits on resize, zooms about the centre and the cursor, pans and fits', async () => {
    const page = await pages.open(1280);
    await render(page, edges, 1000);
    const box = await nodesBox(page);
    expect(box.right - box.left).toBeGreaterThan(0.85 * box.vpWidth);
    expect(box.left).toBeGreaterThanOrEqual(box.vpLeft);
    expect(box.right).toBeLessThanOrEqual(box.vpRight);
    await page.screenshot({ path: join(artifacts, 'circuit-graph-desktop.png'), fullPage: true });

    // The box narrows: the graph refits (ResizeObserver), still filling and inside it.
    await page.evaluate(() => {
      document.getElementById('host')!.style.width = '560px';
    });
    await frames(page);
    const narrow = await nodesBox(page);
    expect(narrow.vpWidth).toBeLessThan(box.vpWidth - 100);
    expect(narrow.right - narrow.left).toBeGreaterThan(0.85 * narrow.vpWidth);
    expect(narrow.left).toBeGreaterThanOrEqual(narrow.vpLeft);
    expect(narrow.right).toBeLessThanOrEqual(narrow.vpRight);

    // "+" zooms about the viewport's centre: a node's offset from the centre grows by the zoom factor.
    const centre = await page.evaluate(() => {
      const r = document.querySelector('.relp-circuit-viewport svg')!.getBoundingClientRect();
      return { x: r.left + r.width / 2, y: r.top + r.height / 2 };
    });
    const before = await nodeAt(page, 'a14.h4');
    await page.click('.relp-circuit button[title="zoom in"]');
    const after = await nodeAt(page, 'a14.h4');
    expect(after.x - centre.x).toBeCloseTo((before.x - centre.x) * 1.25, 0);
    expect(after.y - centre.y).toBeCloseTo((before.y - centre.y) * 1.25, 0);

    // The wheel zooms about the cursor: the node under it stays put while its neighbours move away.
    const anchor = await nodeAt(page, 'a20.h2');
    const other = await nodeAt(page, 'a10.h7');
    await page.mouse.move(anchor.x, anchor.y);
    await page.mouse.wheel(0, -300);
    await frames(page);
    const anchor2 = await nodeAt(page, 'a20.h2');
    const other2 = await nodeAt(page, 'a10.h7');
    expect(Math.abs(anchor2.x - anchor.x)).toBeLessThan(1);
    expect(Math.abs(anchor2.y - anchor.y)).toBeLessThan(1);
    expect(Math.hypot(other2.x - anchor2.x, other2.y - anchor2.y)).toBeGreaterThan(
      1.3 * Math.hypot(other.x - anchor.x, other.y - anchor.y),
    );

    // Dragging pans by exactly the pointer's movement.
    const start = await page.evaluate(() => {
      const r = document.querySelector('.relp-circuit-viewport svg')!.getBoundingClientRect();
      return { x: r.left + 20, y: r.top + 20 };
    });
    const p0 = await nodeAt(page, 'a20.h2');
    await page.mouse.move(start.x, start.y);
    await page.mouse.down();
    await page.mouse.move(start.x + 60, start.y + 35, { steps: 5 });
    await page.mouse.up();
    const p1 = await nodeAt(page, 'a20.h2');
    expect(p1.x - p0.x).toBeCloseTo(60, 0);
    expect(p1.y - p0.y).toBeCloseTo(35, 0);

    // "fit" brings the whole graph back.
    await page.click('.relp-circuit button:text-is("fit")');
    const refit = await nodesBox(page);
    expect(refit.left).toBeCloseTo(narrow.left, 0);
    expect(refit.right).toBeCloseTo(narrow.right, 0);
    await page.close();
  });

  it('shows an edge’s and a node’s score on hover, and lists a clicked node’s edges', async () => {
    const page = await pages.open(1280);
    await render(page, edges, 1000);
    // Hover the middle of an edge: the tooltip names that edge's score.
    const probe = await page.evaluate(() => {
      for (const hit of Array.from(document.querySelectorAll<SVGPathElement>('.relp-circuit .edge-hit'))) {
        const p = hit.getPointAtLength(hit.getTotalLength() / 2);
        const m = hit.getScreenCTM()!;
        const x = m.a * p.x + m.c * p.y + m.e;
        const y = m.b * p.x + m.d * p.y + m.f;
        const top = document.elementFromPoint(x, y);
        if (top === hit) return { x, y, score: Number(hit.parentElement!.dataset.score) };
      }
      return undefined;
    });
    expect(probe).toBeDefined();
    await page.mouse.move(probe!.x, probe!.y);
    const tip = page.locator('.relp-circuit .relp-tooltip');
    await tip.waitFor({ state: 'visible' });
    expect(shownScore((await tip.locator(':scope > *').allTextContents()).join('\n'))).toBeCloseTo(
      probe!.score,
      3,
    );
    await page.screenshot({ path: join(artifacts, 'circuit-graph-hover.png') });

    // Click the node with the most edges: exactly its edges light up and are listed.
    const degree = new Map<string, number>();
    const headOf = (name: string) => name.replace(/<[qkv]>$/, '');
    for (const e of edges) {
      for (const id of new Set([headOf(e.from), headOf(e.to)])) degree.set(id, (degree.get(id) ?? 0) + 1);
    }
    const [busiest, n] = [...degree].sort((a, b) => b[1] - a[1])[0]!;
    const at = await nodeAt(page, busiest);
    await page.mouse.click(at.x, at.y);
    expect(await page.locator('.relp-circuit .edge-group.active').count()).toBe(n);
    expect(await page.locator('.relp-circuit-details li').count()).toBe(n);
    expect(await page.locator('.relp-circuit-details').textContent()).toContain(busiest);
    await page.screenshot({ path: join(artifacts, 'circuit-graph-selected.png'), fullPage: true });
    await page.close();
  });

  it('shows a node circuit’s node score on hover', async () => {
    const page = await pages.open(1280);
    await page.evaluate(
      ({ nLayers }) => {
        const c = (window as unknown as { relpComponents: typeof import('@relp/web') }).relpComponents;
        const grid = (k: number) =>
          Array.from({ length: nLayers }, (_, l) =>
            Array.from({ length: 11 }, (_, p) => Math.sin(l * 7 + p * 3 + k)),
          );
        const results = [
          { label: 'relp', scores: { attn_out: grid(0), mlp_out: grid(1), resid_pre: grid(2) } },
          { label: 'atp', scores: { attn_out: grid(3), mlp_out: grid(4), resid_pre: grid(5) } },
        ];
        const tokens = [
          'When',
          ' Mary',
          ' and',
          ' John',
          ' went',
          ' to',
          ' the',
          ' store',
          ',',
          ' John',
          ' gave',
        ];
        c.renderCircuitGraph(
          document.getElementById('host')!,
          c.circuitFromResults(results, tokens, { method: 'relp', topK: 40 }),
        );
      },
      { nLayers: N_LAYERS },
    );
    await frames(page);
    const node = page.locator('.relp-circuit .node').first();
    const score = Number(await node.getAttribute('data-score'));
    await node.locator('circle').hover();
    const tip = page.locator('.relp-circuit .relp-tooltip');
    await tip.waitFor({ state: 'visible' });
    expect(shownScore((await tip.locator(':scope > *').allTextContents()).join('\n'))).toBeCloseTo(score, 3);
    const box = await nodesBox(page);
    expect(box.right - box.left).toBeGreaterThan(0.85 * box.vpWidth);
    await page.screenshot({ path: join(artifacts, 'circuit-graph-nodes.png'), fullPage: true });
    await page.close();
  });

  it('pans with one finger and zooms with two about their midpoint (touch)', async () => {
    const page = await pages.open(390, 844, { hasTouch: true });
    await render(page, edges);
    const cdp = await page.context().newCDPSession(page);
    const touch = (type: string, points: { x: number; y: number }[]) =>
      cdp.send('Input.dispatchTouchEvent', {
        type,
        touchPoints: points.map((p, id) => ({ x: p.x, y: p.y, id })),
      });
    const box = await page.evaluate(() => {
      const r = document.querySelector('.relp-circuit-viewport svg')!.getBoundingClientRect();
      return { x: r.left, y: r.top, w: r.width, h: r.height };
    });
    // One finger: the graph follows it.
    const a0 = await nodeAt(page, 'a12.h3');
    const start = { x: box.x + 30, y: box.y + 40 };
    await touch('touchStart', [start]);
    for (let i = 1; i <= 5; i++) await touch('touchMove', [{ x: start.x + 8 * i, y: start.y + 5 * i }]);
    await touch('touchEnd', []);
    const a1 = await nodeAt(page, 'a12.h3');
    expect(a1.x - a0.x).toBeCloseTo(40, 0);
    expect(a1.y - a0.y).toBeCloseTo(25, 0);
    // Two fingers spreading apart about a point: distances from it double, the point stays.
    const mid = { x: box.x + box.w / 2, y: box.y + box.h / 2 };
    const far = await nodeAt(page, 'a3.h1');
    const spread = (d: number) => [
      { x: mid.x - d, y: mid.y },
      { x: mid.x + d, y: mid.y },
    ];
    await touch('touchStart', spread(40));
    for (const d of [50, 60, 70, 80]) await touch('touchMove', spread(d));
    await touch('touchEnd', []);
    const far2 = await nodeAt(page, 'a3.h1');
    expect(far2.x - mid.x).toBeCloseTo((far.x - mid.x) * 2, 0);
    expect(far2.y - mid.y).toBeCloseTo((far.y - mid.y) * 2, 0);
    await page.close();
  });

  it('draws only the strongest edges of a huge graph, quickly, and says so', async () => {
    const page = await pages.open(1280);
    const r = await page.evaluate(() => {
      const c = (window as unknown as { relpComponents: typeof import('@relp/web') }).relpComponents;
      const edges: { from: string; to: string; score: number }[] = [];
      for (let i = 0; i < 60_000; i++) {
        const l = 1 + (i % 29);
        edges.push({ from: `a${l - 1}.h${i % 9}`, to: `a${l}.h${(i * 7) % 9}<q>`, score: Math.sin(i) });
      }
      const t0 = performance.now();
      c.renderCircuitGraph(
        document.getElementById('host')!,
        c.edgeCircuitGraph(edges, { nLayers: 30, nHeads: 9 }),
      );
      return {
        ms: performance.now() - t0,
        drawn: document.querySelectorAll('.relp-circuit .edge-group').length,
        caption: document.querySelector('.relp-circuit figcaption')!.textContent,
      };
    });
    expect(r.drawn).toBe(600);
    expect(r.caption).toContain('600 of 60000 edges');
    expect(r.ms).toBeLessThan(5000);
    await page.close();
  });

  it('stays inside a 390 px screen with labels of at least 10 screen pixels', async () => {
    const page = await pages.open(390, 844);
    await render(page, edges);
    const m = await page.evaluate(() => {
      const fig = document.querySelector('.relp-circuit')!.getBoundingClientRect();
      const sizes = Array.from(document.querySelectorAll<SVGTextElement>('.relp-circuit svg text'))
        .filter((t) => t.style.display !== 'none' && (t.textContent ?? '') !== '')
        .map((t) => Number.parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM()!.a);
      const nodeLabels = Array.from(
        document.querySelectorAll<SVGTextElement>('.relp-circuit .node-label'),
      ).filter((t) => t.style.display !== 'none' && t.textContent).length;
      return {
        scrollWidth: document.scrollingElement!.scrollWidth,
        figLeft: fig.left,
        figRight: fig.right,
        minFont: Math.min(...sizes),
        labels: sizes.length,
        nodeLabels,
        nodes: document.querySelectorAll('.relp-circuit .node').length,
      };
    });
    await page.screenshot({ path: join(artifacts, 'circuit-graph-390.png'), fullPage: true });
    expect(m.scrollWidth).toBeLessThanOrEqual(390);
    expect(m.figLeft).toBeGreaterThanOrEqual(0);
    expect(m.figRight).toBeLessThanOrEqual(390);
    expect(m.minFont).toBeGreaterThanOrEqual(10);
    // Most nodes keep a (possibly shortened) label at fit.
    expect(m.nodeLabels).toBeGreaterThan(0.6 * m.nodes);
    const box = await nodesBox(page);
    expect(box.right - box.left).toBeGreaterThan(0.8 * box.vpWidth);
    await page.close();
  });
});
