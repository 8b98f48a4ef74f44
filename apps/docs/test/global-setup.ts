/**
 * Builds the site once for every end-to-end test file (they share `dist`, so two builds must never race) and
 * hands its folder to them (`inject('dist')`). RELP_E2E_DIST: test an already built site (e.g. an experimental
 * build) instead of building one. Without /usr/bin/chromium nothing is built (the suites skip themselves).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { CHROMIUM } from './demo-helpers.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The built site's folder. */
    dist: string;
    /** Seconds the build took (0 for RELP_E2E_DIST). */
    buildSeconds: number;
  }
}

const app = join(dirname(fileURLToPath(import.meta.url)), '..');

export default function setup(project: TestProject): void {
  const prebuilt = process.env.RELP_E2E_DIST;
  const t0 = Date.now();
  if (!prebuilt && existsSync(CHROMIUM)) {
    execFileSync('node', ['--conditions=source', '--import', 'tsx', 'scripts/prepare.ts'], {
      cwd: app,
      stdio: 'inherit',
    });
    execFileSync(join(app, 'node_modules', '.bin', 'vite'), ['build', '--logLevel', 'warn'], {
      cwd: app,
      stdio: 'inherit',
    });
  }
  project.provide('dist', prebuilt ?? join(app, 'dist'));
  project.provide('buildSeconds', (Date.now() - t0) / 1000);
}
