import { readFileSync } from 'node:fs';
import {
  type AttributeOptions,
  attribute,
  type LanguageModel,
  type ModelFamily,
  makePairBatch,
  type ScoreGrid,
  type SiteName,
  type SiteRequest,
  type TokenPair,
} from '@relp/core';
import { presetByName } from '@relp/lrp-rules';
import { gpt2Family } from '@relp/models-gpt2';
import { pythiaFamily } from '@relp/models-pythia';
import { describeEachBackend, fixturePath, installLeakGuard, useBackend } from '@relp/testing';
import { readSafetensors } from '@relp/weights';
import { afterAll, beforeAll, expect, it } from 'vitest';

/**
 * The engine against independent PyTorch values (tools/oracles/attribution_reference.py): activation patching,
 * AtP, RelP (relp, relp-ah) and integrated gradients, denoising and noising, per position, head and neuron.
 * Every grid must match within 1e-4 of its largest |score|.
 */

interface Expected {
  ig_steps: number;
  pairs: TokenPair[];
  results: Record<string, { metric: { clean: number; corrupt: number }; scores: Record<string, ScoreGrid> }>;
}

const MODELS: [string, ModelFamily][] = [
  ['gpt2-ref', gpt2Family],
  ['pythia-ref', pythiaFamily],
];

function flat(g: unknown): number[] {
  return Array.isArray(g) ? g.flatMap(flat) : [g as number];
}

function load(name: string, family: ModelFamily): { model: LanguageModel; expected: Expected } {
  const dir = fixturePath('attribution', name);
  const config = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')) as Record<string, unknown>;
  const weights = readSafetensors(readFileSync(`${dir}/model.safetensors`));
  const expected = JSON.parse(readFileSync(`${dir}/expected.json`, 'utf8')) as Expected;
  return { model: family.fromHfConfig(config, weights), expected };
}

installLeakGuard();

for (const [name, family] of MODELS) {
  describeEachBackend(`attribution reference ${name}`, (backend) => {
    let model: LanguageModel;
    let expected: Expected;
    beforeAll(async () => {
      await useBackend(backend);
      ({ model, expected } = load(name, family));
    });
    afterAll(() => model.dispose());

    const cases = ['activation-patching', 'atp', 'relp', 'relp-ah', 'ig'].flatMap((m) =>
      (['denoising', 'noising'] as const).map((d) => [m, d] as const),
    );
    for (const [method, direction] of cases) {
      // Per-neuron activation patching is thousands of passes: once, on cpu, is enough.
      const neurons = method !== 'activation-patching' || backend === 'cpu';
      it(`${method} ${direction} matches PyTorch`, async () => {
        const ref = expected.results[`${method}|${direction}`]!;
        const batch = makePairBatch(expected.pairs, { dims: model.dims });
        const sites: (SiteName | SiteRequest)[] = Object.keys(ref.scores)
          .filter((s) => neurons || s !== 'mlp_post')
          .map((s) =>
            s === 'z'
              ? { site: 'z', granularity: 'head' }
              : s === 'mlp_post'
                ? { site: 'mlp_post', granularity: 'neuron' }
                : (s as SiteName),
          );
        const options: AttributeOptions =
          method === 'activation-patching'
            ? { method, sites, direction }
            : method === 'ig'
              ? { method, sites, direction, igSteps: expected.ig_steps }
              : method === 'atp'
                ? { method, sites, direction }
                : { method: 'atp', sites, direction, rules: presetByName(method) };
        const result = await attribute(model, batch, options);
        expect(result.metric.clean).toBeCloseTo(ref.metric.clean, 4);
        expect(result.metric.corrupt).toBeCloseTo(ref.metric.corrupt, 4);
        for (const s of sites) {
          const site = typeof s === 'string' ? s : s.site;
          const want = flat(ref.scores[site]);
          const got = flat(result.scores[site]);
          expect(got.length, site).toBe(want.length);
          const scale = Math.max(...want.map(Math.abs));
          const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i]!)));
          expect(worst / scale, `${site}: max |Δ| ${worst} vs largest score ${scale}`).toBeLessThanOrEqual(
            1e-4,
          );
        }
      });
    }
  });
}
