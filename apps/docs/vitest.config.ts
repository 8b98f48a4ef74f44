import { defineConfig } from 'vitest/config';
import { relpVitest } from '../../vitest.shared.js';

export default defineConfig(
  relpVitest({ include: ['test/**/*.test.ts'], testTimeout: 300_000, hookTimeout: 300_000 }),
);
