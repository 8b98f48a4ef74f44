import { defineConfig } from 'vitest/config';
import { relpVitest } from '../../../vitest.shared.js';

// Benchmarks, not part of `pnpm test`: npx vitest run --config bench/vitest.config.ts
export default defineConfig(relpVitest({ include: ['bench/**/*.bench.ts'], testTimeout: 600_000 }));
