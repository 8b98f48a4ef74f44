import {
  type AttributeOptions,
  attribute,
  compareGrids,
  isRelpError,
  type LanguageModel,
  type MethodOptions,
  makePairBatch,
  type PairBatch,
  Site,
} from '@relp/core';
import { RELP } from '@relp/lrp-rules';
import { randomGpt2Model } from '@relp/models-gpt2';
import { installLeakGuard, useBackend } from '@relp/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareMethods } from '../src/index.js';

/**
 * compareMethods is the engine's `attribute` run once per method on one batch: every result must be the one a
 * direct call gives (bit for bit), the agreement the one compareGrids gives, and a knob must reach exactly the
 * methods that take it.
 */
installLeakGuard();

describe('compareMethods', () => {
  let model: LanguageModel;
  let batch: PairBatch;
  const sites = [Site.ResidPre, Site.AttnOut, { site: Site.Z, granularity: 'head' as const }];
  const direct = (o: MethodOptions & { label: string }) =>
    attribute(model, batch, { ...o, sites, normalize: true });

  beforeAll(async () => {
    await useBackend('cpu');
    model = randomGpt2Model('tiny', 5, { initializerRange: 0.3, biasStd: 0.1 });
    const V = model.dims.vocabSize;
    const pairs = [0, 1].map((b) => {
      const clean = Array.from({ length: 5 }, (_, i) => (i * 7 + b * 5 + 1) % V);
      const corrupt = [...clean];
      corrupt[1] = (corrupt[1]! + 9) % V;
      return { clean, corrupt, answer: 4 + b, wrong: 30 + b };
    });
    batch = makePairBatch(pairs, { dims: model.dims });
  });
  afterAll(() => model.dispose());

  it('runs activation patching first, then each method once, as direct attribute calls would', {
    timeout: 120_000,
  }, async () => {
    const started: string[] = [];
    const finished: string[] = [];
    const cmp = await compareMethods(model, batch, {
      methods: ['relp', 'ig', 'atp', 'relp', 'ap'],
      sites,
      normalize: true,
      settings: { igSteps: 3 },
      topK: 4,
      onStart: (m) => started.push(m.name),
      onResult: (m, r) => finished.push(`${m.name}=${r.label}`),
    });
    expect(started).toEqual(['activation-patching', 'relp', 'ig', 'atp']);
    expect(finished).toEqual(['activation-patching=activation-patching', 'relp=relp', 'ig=ig', 'atp=atp']);
    const want = {
      ap: await direct({ method: 'activation-patching', label: 'activation-patching' }),
      relp: await direct({ method: 'atp', rules: RELP, label: 'relp' }),
      ig: await direct({ method: 'ig', igSteps: 3, label: 'ig' }),
      atp: await direct({ method: 'atp', label: 'atp' }),
    };
    const strip = (r: { cost: object }) => ({ ...r, cost: undefined });
    expect(strip(cmp.reference!)).toEqual(strip(want.ap));
    expect(cmp.results.map(strip)).toEqual([want.relp, want.ig, want.atp].map(strip));
    // The IG setting reached IG: ten steps (the default) give other scores.
    const ig10 = await direct({ method: 'ig', label: 'ig' });
    expect(ig10.scores.resid_pre).not.toEqual(want.ig.scores.resid_pre);
    expect(cmp.agreement.map((a) => `${a.method}/${a.site}`)).toEqual(
      ['relp', 'ig', 'atp'].flatMap((m) => ['resid_pre', 'attn_out', 'z'].map((s) => `${m}/${s}`)),
    );
    for (const a of cmp.agreement) {
      const r = cmp.results.find((x) => x.label === a.method)!;
      expect(a.agreement).toEqual(compareGrids(r.scores[a.site]!, want.ap.scores[a.site]!, 4));
    }
  });

  it('without activation patching listed and reference "if-listed", reports results but no agreement', async () => {
    const cmp = await compareMethods(model, batch, {
      methods: ['atp'],
      reference: 'if-listed',
      sites,
      normalize: true,
    });
    expect(cmp.reference).toBeUndefined();
    expect(cmp.results.map((r) => r.label)).toEqual(['atp']);
    expect(cmp.agreement).toEqual([]);
  });

  it('refuses a setting none of the methods takes, and an empty list, before running anything', async () => {
    let ran = 0;
    const attempt = (o: Parameters<typeof compareMethods>[2]) =>
      compareMethods(model, batch, { ...o, onStart: () => ran++ }).then(
        () => 'resolved',
        (e) => (isRelpError(e, 'BAD_INPUT') ? e.message : String(e)),
      );
    expect(
      await attempt({ methods: ['atp', 'relp'], reference: 'if-listed', sites, settings: { igSteps: 4 } }),
    ).toMatch(/igSteps applies to ig/);
    expect(await attempt({ methods: [], reference: 'if-listed', sites })).toMatch(
      /choose at least one method/,
    );
    expect(await attempt({ methods: ['relp', 'nope'], sites })).toMatch(/unknown method 'nope'/);
    expect(ran).toBe(0);
  });
});

describe('attribute takes only the knobs of its method', () => {
  let model: LanguageModel;
  let batch: PairBatch;
  beforeAll(async () => {
    await useBackend('cpu');
    model = randomGpt2Model('tiny', 6, { initializerRange: 0.3 });
    batch = makePairBatch([{ clean: [1, 2, 3], corrupt: [1, 5, 3], answer: 4, wrong: 6 }], {
      dims: model.dims,
    });
  });
  afterAll(() => model.dispose());

  const refused = async (o: unknown) =>
    attribute(model, batch, o as AttributeOptions).then(
      () => 'resolved',
      (e) => (isRelpError(e, 'BAD_INPUT') ? e.message : String(e)),
    );

  it('a knob the method would ignore is BAD_INPUT at run time (and a type error, below)', async () => {
    const sites = [Site.ResidPre];
    expect(await refused({ method: 'atp', sites, igSteps: 3 })).toBe(
      'igSteps does not apply to atp (it takes rules)',
    );
    expect(await refused({ method: 'atp', sites, maxBatchRows: 3, patchingStrategy: 'naive' })).toBe(
      'maxBatchRows, patchingStrategy do not apply to atp (it takes rules)',
    );
    expect(await refused({ method: 'activation-patching', sites, igInterpolate: 'site' })).toMatch(
      /^igInterpolate does not apply to activation-patching \(it takes maxBatchRows, patchingStrategy\)$/,
    );
    expect(await refused({ method: 'ig', sites, patchingStrategy: 'fast' })).toMatch(
      /^patchingStrategy does not apply to ig/,
    );
    // An undefined knob is an absent one.
    expect(await refused({ method: 'atp', sites, igSteps: undefined })).toBe('resolved');
  });

  it('the types refuse the same knobs', () => {
    const sites = [Site.ResidPre];
    const typed: AttributeOptions[] = [
      // @ts-expect-error igSteps is integrated gradients' knob
      { method: 'atp', sites, igSteps: 3 },
      // @ts-expect-error activation patching has no rules
      { method: 'activation-patching', sites, rules: RELP },
      // @ts-expect-error patchingStrategy is activation patching's knob
      { method: 'ig', sites, patchingStrategy: 'fast' },
      { method: 'ig', sites, igSteps: 3, maxBatchRows: 4, rules: RELP },
      { method: 'activation-patching', sites, maxBatchRows: 4, patchingStrategy: 'naive' },
    ];
    expect(typed).toHaveLength(5);
  });
});
