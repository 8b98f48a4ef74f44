// A family must refuse a config that claims absurd sizes before it makes anything sized by them: each integer field
// of a reference fixture's config.json set to int32's limit, a billion, and 2^53 is refused with a typed error, or
// (a field the model is not sized by, such as a token id) builds the same model, in well under seconds and
// megabytes.
import { isRelpError, type LanguageModel } from '@relp/core';
import { describe, expect, it } from 'vitest';
import type { FamilyConformance } from './conformance.js';
import { loadModelFixture } from './fixtures.js';

const ABSURD = [2 ** 31, 1e9, 2 ** 53] as const;
/** Time one absurd config may take to be refused or built. */
const MAX_MS = 2000;
/** Growth of the process's peak resident memory allowed over every absurd config of a fixture. */
const MAX_PEAK_GROWTH_MB = 256;

type Json = Record<string, unknown>;

/** Paths (key lists) of every integer-valued number in a config, in nested objects too (not in arrays). */
function integerFields(cfg: Json, at: readonly string[] = []): string[][] {
  const out: string[][] = [];
  for (const [k, v] of Object.entries(cfg)) {
    if (typeof v === 'number' && Number.isInteger(v)) out.push([...at, k]);
    else if (typeof v === 'object' && v !== null && !Array.isArray(v))
      out.push(...integerFields(v as Json, [...at, k]));
  }
  return out;
}

function withField(cfg: Json, path: readonly string[], value: number): Json {
  const [k, ...rest] = path as [string, ...string[]];
  return { ...cfg, [k]: rest.length === 0 ? value : withField(cfg[k] as Json, rest, value) };
}

const peakRssMb = () => process.resourceUsage().maxRSS / 1024;

/** Registers the absurd-config checks of one family on its first reference fixture. */
export function absurdConfigTests(spec: FamilyConformance): void {
  const fixture = spec.fixtures[0];
  if (fixture === undefined) return;
  describe(`absurd sizes in ${fixture}'s config.json`, () => {
    it('every integer field at 2^31, 1e9 and 2^53: a typed error or the same model, in seconds and megabytes', () => {
      const fx = loadModelFixture(fixture);
      const reference = spec.family.fromHfConfig(fx.config, fx.weights);
      const dims = { ...reference.dims };
      reference.dispose();
      const peakBefore = peakRssMb();
      const fields = integerFields(fx.config);
      expect(fields.length).toBeGreaterThan(3);
      for (const path of fields) {
        for (const value of ABSURD) {
          const what = `${path.join('.')} = ${value}`;
          const t0 = performance.now();
          let model: LanguageModel | undefined;
          try {
            model = spec.family.fromHfConfig(withField(fx.config, path, value), fx.weights);
          } catch (e) {
            expect(isRelpError(e), `${what}: ${String(e)}`).toBe(true);
          }
          const ms = performance.now() - t0;
          if (model !== undefined) {
            const built = { ...model.dims };
            model.dispose();
            expect(built, `${what} was accepted, so it must not change the model's sizes`).toEqual(dims);
          }
          expect(ms, `${what} took ${ms.toFixed(0)} ms`).toBeLessThan(MAX_MS);
        }
      }
      expect(peakRssMb() - peakBefore, 'peak memory growth (MB)').toBeLessThan(MAX_PEAK_GROWTH_MB);
    });
  });
}
