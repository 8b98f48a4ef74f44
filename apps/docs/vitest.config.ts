import { defineConfig } from 'vitest/config';
import { relpVitest } from '../../vitest.shared.js';

export default defineConfig(
  relpVitest({
    include: ['test/**/*.test.ts'],
    // Builds the site once for all end-to-end files (they share dist/).
    globalSetup: ['test/global-setup.ts'],
    // One Chromium at a time: the files would otherwise compete for CI's two cores.
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 300_000,
  }),
);
