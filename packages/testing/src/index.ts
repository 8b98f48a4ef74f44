import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeAvailable } from '@relp/backend-native/probe';
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeEach, describe, expect } from 'vitest';

export type TestBackend = 'cpu' | 'wasm' | 'native';

/**
 * Backends every engine test runs on in Node: cpu, wasm and native (when its addon is built). RELP_TEST_BACKENDS
 * narrows the list (e.g. "cpu"). The same test body runs on each, as tfjs's describeWithFlags does. WebGPU in
 * Node has no synchronous reads (tfjs reads a GPU buffer synchronously through OffscreenCanvas, which Node
 * lacks), so it runs its own suite of the same checks with asynchronous reads (packages/conformance).
 */
export function testBackends(): TestBackend[] {
  const env = process.env.RELP_TEST_BACKENDS;
  // `native` when its addon is built here (pnpm --filter @relp/backend-native build:native).
  const all: TestBackend[] = nativeAvailable() ? ['cpu', 'wasm', 'native'] : ['cpu', 'wasm'];
  if (!env) return all;
  return env.split(',').filter((b): b is TestBackend => (all as string[]).includes(b));
}

let registered: Promise<void> | undefined;
async function registerBackends(): Promise<void> {
  registered ??= (async () => {
    await import('@tensorflow/tfjs-backend-cpu');
    await import('@tensorflow/tfjs-backend-wasm');
    if (nativeAvailable()) await (await import('@relp/backend-native')).registerNative();
    // wasm registers with a higher priority but initialises asynchronously: settle on one before any test.
    await tf.setBackend(testBackends()[0] ?? 'cpu');
    await tf.ready();
  })();
  return registered;
}

export async function useBackend(name: TestBackend): Promise<void> {
  await registerBackends();
  if (!(await tf.setBackend(name))) throw new Error(`backend ${name} failed to initialise`);
  await tf.ready();
}

/**
 * Runs `body` once per backend inside a describe block that switches to that backend first; `only` narrows the
 * backends further (those of testBackends() it names).
 */
export function describeEachBackend(
  title: string,
  body: (backend: TestBackend) => void,
  only?: readonly TestBackend[],
): void {
  for (const backend of testBackends().filter((b) => only === undefined || only.includes(b))) {
    describe(`${title} [${backend}]`, () => {
      beforeEach(async () => {
        await useBackend(backend);
      });
      body(backend);
    });
  }
}

/**
 * Fails a test that leaves tensors behind. Call once at the top of a test file (inside or outside a describe):
 * every test must end with as many live tensors as it started with.
 */
export function installLeakGuard(): void {
  let before = 0;
  beforeEach(async () => {
    await registerBackends();
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    const after = tf.memory().numTensors;
    expect(after - before, 'tensors leaked by this test').toBe(0);
  });
}

/** Largest absolute difference between two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(d)) return Number.POSITIVE_INFINITY;
    if (d > m) m = d;
  }
  return m;
}

export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol: number,
  what = '',
): void {
  const d = maxAbsDiff(actual, expected);
  expect(d, `${what} max |Δ| = ${d} > ${atol}`).toBeLessThanOrEqual(atol);
}

/** Bitwise equality of two float32 arrays (NaNs with equal bits count as equal). */
export function expectBitIdentical(a: Float32Array, b: Float32Array, what = ''): void {
  expect(a.length, `${what} length`).toBe(b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let first = -1;
  for (let i = 0; i < ua.length; i++) {
    if (ua[i] !== ub[i]) {
      first = i;
      break;
    }
  }
  expect(first, `${what} first differing element ${first}: ${a[first]} vs ${b[first]}`).toBe(-1);
}

/** The repository root (where fixtures/ lives). */
export const repoRoot: string = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export function fixturePath(...parts: string[]): string {
  return join(repoRoot, 'fixtures', ...parts);
}

export function fixtureExists(...parts: string[]): boolean {
  return existsSync(fixturePath(...parts));
}

export function readFixtureJson<T = unknown>(...parts: string[]): T {
  return JSON.parse(readFileSync(fixturePath(...parts), 'utf8')) as T;
}

/**
 * A tiny deterministic PRNG (mulberry32) for tests that need random numbers without Math.random. The same stream
 * as @relp/tasks' seededRng (a tasks test holds them equal): this package cannot import it, as every package's tests,
 * tasks' and core's included, import this one.
 */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
