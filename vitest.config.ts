import { defineConfig } from 'vitest/config';

// Integration tests start real PostgreSQL servers; two cores cannot run many
// clusters at once, so files run at most two at a time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
    pool: 'forks',
  },
});
