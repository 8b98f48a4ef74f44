/**
 * The @relp/web components on a bare page in Debian's Chromium: test/components/ is bundled with Vite into a
 * temporary folder (well under a second), served on 127.0.0.1 and opened at a chosen width. The page exposes the
 * components as `window.relpComponents`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { CHROMIUM, FLAGS } from './demo-helpers.js';
import { serveStatic } from './static-server.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface ComponentPages {
  /** A fresh page at `width` × `height` CSS px with the components loaded. */
  open(width: number, height?: number, options?: { hasTouch?: boolean }): Promise<Page>;
  close(): Promise<void>;
}

export async function componentPages(): Promise<ComponentPages> {
  const out = mkdtempSync(join(tmpdir(), 'relp-components-'));
  await build({
    root: join(here, 'components'),
    configFile: false,
    logLevel: 'warn',
    base: './',
    resolve: { conditions: ['source', 'module', 'browser', 'import', 'default'] },
    build: { outDir: out, emptyOutDir: true, target: 'es2022' },
  });
  const site = await serveStatic(out);
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  return {
    async open(width, height = 900, options = {}) {
      const page = await browser.newPage({
        viewport: { width, height },
        hasTouch: options.hasTouch ?? false,
      });
      page.on('pageerror', (e) => console.error(`[page] ${e.message}`));
      await page.goto(site.url);
      await page.waitForSelector('body[data-ready]');
      return page;
    },
    async close() {
      await browser.close();
      await site.close();
      rmSync(out, { recursive: true, force: true });
    },
  };
}
