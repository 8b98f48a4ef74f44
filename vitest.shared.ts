import type { ViteUserConfig } from 'vitest/config';

/** Shared vitest settings: resolve workspace packages to their TypeScript sources. */
export function relpVitest(overrides: ViteUserConfig['test'] = {}): ViteUserConfig {
  return {
    resolve: { conditions: ['source', 'import', 'default'] },
    ssr: { resolve: { conditions: ['source', 'import', 'default'], externalConditions: ['source'] } },
    test: {
      include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
      testTimeout: 120_000,
      hookTimeout: 120_000,
      pool: 'forks',
      maxWorkers: 2,
      ...overrides,
    },
  };
}
