// What every model family must do, as vitest blocks: one call per family registers them all (see the README).
import {
  ALL_SITES,
  checkRulesCover,
  ErrorCodes,
  type LanguageModel,
  type ModelFamily,
  type Nonlinearity,
  RunContext,
  Site,
  type SiteKey,
  type SiteRequest,
  type SlotKind,
  siteKey,
  siteLayers,
  siteShape,
} from '@relp/core';
import { ATTNLRP, RELP, RELP_AH, RELP_CP } from '@relp/lrp-rules';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  describeEachBackend,
  expectBitIdentical,
  expectClose,
  installLeakGuard,
  maxAbsDiff,
  type TestBackend,
  testBackends,
  useBackend,
} from '../index.js';
import { absurdConfigTests } from './configs.js';
import { expectRelpError } from './errors.js';
import {
  expectedTensor,
  fixtureTokens,
  loadModelFixture,
  type ModelFixture,
  metricCoefficients,
  modelFromFixture,
} from './fixtures.js';
import {
  expectBadPrefixRefused,
  expectFastPatchingEqualsNaive,
  expectJoinedRunMatchesFullRun,
  expectPrefixRunMatchesFullRun,
} from './prefix.js';

/** A model the family-independent checks run on. */
export interface ConformanceModel {
  /** Shown in the test names. */
  readonly name: string;
  /** Builds the model on the current backend; the suite disposes it (and builds one more to test dispose). */
  readonly load: () => LanguageModel;
  /**
   * Kinds of declared nonlinearities that no rule preset treats, on purpose (e.g. Gemma's final-logit
   * soft-capping): the presets must refuse them with MISSING_RULE naming the kind, and cover all the others.
   */
  readonly uncoveredByPresets?: readonly string[];
}

export interface FamilyConformance {
  /** The family's name in the test titles, e.g. "GPT-2". */
  readonly name: string;
  /** Builds the reference fixtures' models. */
  readonly family: ModelFamily;
  /** fixtures/models/<name> written by tools/oracles: logits, every site and site gradients within 1e-4. */
  readonly fixtures: readonly string[];
  /** Models for the checks of sites, inputs, rules, prefix and joined runs, leaks and dispose. */
  readonly models: readonly ConformanceModel[];
  /** Token ids [B ≥ 2][T ≥ 4] valid in every model's vocabulary: the batch of those checks. */
  readonly tokenIds: number[][];
  /** How often one forward pass of nLayers blocks calls each nonlinearity's rule slot. */
  readonly slotCalls: (nLayers: number) => Readonly<Record<Nonlinearity['slot'], number>>;
  /** (start block, offset) of the prefix runs, each against the full run of tokenIds. */
  readonly prefixRuns: readonly (readonly [number, number])[];
  /** (start block, offset) of the joined runs; each needs a block after its start. */
  readonly joinedRuns: readonly (readonly [number, number])[];
  /**
   * Fast activation patching (prefix and joined runs at work) against the naive way at these sites. Omitted only
   * where another suite already runs it on this family (GPT-2 and Pythia: the conformance package).
   */
  readonly patching?: { readonly sites: readonly SiteRequest[]; readonly timeout: number };
  /** Backends to run on (default: every backend here, see testBackends). */
  readonly backends?: readonly TestBackend[];
}

const ATOL = 1e-4;

/**
 * Sites for `patching`: each kind of site fast patching handles on its own path (residual-like, per-head, per-neuron,
 * keys/values read from the prefix, the pattern, the norms' scales and the final norm's readout rows).
 */
export const PATCHING_SITES: readonly SiteRequest[] = [
  { site: Site.ResidPre },
  { site: Site.AttnOut },
  { site: Site.MlpOut },
  { site: Site.ResidMid },
  { site: Site.Z, granularity: 'head' },
  { site: Site.MlpPost, granularity: 'neuron', layers: [1] },
  { site: Site.K, granularity: 'head' },
  { site: Site.V },
  { site: Site.Q },
  { site: Site.Pattern, granularity: 'head' },
  { site: Site.Ln1Scale },
  { site: Site.Ln2Scale },
  { site: Site.LnFinalScale },
];
const PRESETS = [RELP, RELP_AH, RELP_CP, ATTNLRP] as const;

/** The family's slot calls, and the shared attention's two products once per block. */
function allSlotCalls(spec: FamilyConformance, nLayers: number): Record<SlotKind, number> {
  return { ...spec.slotCalls(nLayers), attention_scores: nLayers, attention_values: nLayers };
}

/** Every (site, layer) key a model declares. */
export function declaredSiteKeys(model: LanguageModel): SiteKey[] {
  const keys: SiteKey[] = [];
  for (const site of model.sites) {
    for (let l = 0; l < siteLayers(model.dims, site); l++) keys.push(siteKey(site, l));
  }
  return keys;
}

/** Registers the conformance tests of one family (call once at the top level of a test file). */
export function runFamilyConformance(spec: FamilyConformance): void {
  afterAll(() => {
    for (const [k, w] of worst) {
      const e = (x: number) => x.toExponential(2);
      console.log(`parity ${k}: logits ${e(w.logits)}, sites ${e(w.sites)}, grads ${e(w.grads)}`);
    }
  });
  describeEachBackend(
    `${spec.name} conformance`,
    (backend) => {
      installLeakGuard();
      for (const name of spec.fixtures) parityTests(spec, name, backend);
      for (const m of spec.models) modelTests(spec, m, backend);
    },
    spec.backends,
  );
  // Config checks need no backend of their own: the first one runs them.
  describeEachBackend(
    `${spec.name} config checks`,
    () => absurdConfigTests(spec),
    (spec.backends ?? testBackends()).slice(0, 1),
  );
}

/** Largest errors against the fixtures, per fixture and backend, printed at the end (for the report). */
const worst = new Map<string, { logits: number; sites: number; grads: number }>();

function parityTests(spec: FamilyConformance, name: string, backend: TestBackend): void {
  describe(`reference fixture ${name}`, () => {
    let fx: ModelFixture;
    let model: LanguageModel;
    let tokens: tf.Tensor2D;
    const note = (kind: 'logits' | 'sites' | 'grads', err: number) => {
      const k = `${name} [${backend}]`;
      const w = worst.get(k) ?? { logits: 0, sites: 0, grads: 0 };
      w[kind] = Math.max(w[kind], err);
      worst.set(k, w);
    };

    beforeAll(async () => {
      await useBackend(backend);
      fx = loadModelFixture(name);
      model = modelFromFixture(spec.family, fx);
      tokens = fixtureTokens(fx);
    });
    afterAll(() => {
      model?.dispose();
      tokens?.dispose();
    });

    it(`logits match without hooks within ${ATOL}`, () => {
      const logits = model.forward({ tokens }, new RunContext());
      try {
        const want = expectedTensor(fx, 'logits');
        expect(logits.shape).toEqual([...want.shape]);
        const d = maxAbsDiff(logits.dataSync(), want.data);
        note('logits', d);
        expect(d, 'logits max |Δ|').toBeLessThanOrEqual(ATOL);
      } finally {
        logits.dispose();
      }
    });

    it(`every site and the logits match within ${ATOL} with every site recorded`, () => {
      const keys = declaredSiteKeys(model);
      // The fixture holds exactly the sites the model declares.
      const inFixture = fx.expected
        .names()
        .filter((n) => n.includes('.') && !n.startsWith('grad.') && !n.startsWith('metric'));
      expect(new Set(inFixture)).toEqual(new Set(keys));
      const ctx = new RunContext({ cache: keys });
      const logits = model.forward({ tokens }, ctx);
      const cache = ctx.takeCache();
      try {
        ctx.assertAllVisited();
        expect(ctx.slotCalls).toEqual(allSlotCalls(spec, model.dims.nLayers));
        const dl = maxAbsDiff(logits.dataSync(), expectedTensor(fx, 'logits').data);
        note('logits', dl);
        expect(dl, 'logits max |Δ|').toBeLessThanOrEqual(ATOL);
        for (const key of keys) {
          const got = cache.get(key);
          const want = expectedTensor(fx, key);
          expect(got?.shape, key).toEqual([...want.shape]);
          const d = maxAbsDiff(got!.dataSync(), want.data);
          note('sites', d);
          expect(d, `${key} max |Δ|`).toBeLessThanOrEqual(ATOL);
        }
      } finally {
        tf.dispose([logits, ...cache.values()]);
      }
    });

    // Through a readout at T−1 and through the full logits: both paths must give PyTorch's gradients, within
    // ATOL absolute and within ATOL of each site's largest gradient.
    for (const readout of [true, false]) {
      it(`site gradients of the metric match PyTorch's (${readout ? 'readout' : 'full logits'})`, () => {
        const keys = fx.expected
          .names()
          .filter((n) => n.startsWith('grad.'))
          .map((n) => n.slice('grad.'.length) as SiteKey);
        expect(keys.length).toBeGreaterThanOrEqual(3 * model.dims.nLayers);
        const deltas = keys.map((k) => tf.zeros([...expectedTensor(fx, `grad.${k}`).shape]));
        const coef = metricCoefficients(fx, model.dims.vocabSize, readout ? 1 : fx.seq);
        const options = readout ? { readout: new Array<number>(fx.batch).fill(fx.seq - 1) } : {};
        const { value, grads } = tf.valueAndGrads((...ds: tf.Tensor[]) => {
          const ctx = new RunContext({ deltas: new Map(keys.map((k, i) => [k, ds[i]!])) });
          return tf.sum(tf.mul(model.forward({ tokens }, ctx, options), coef)) as tf.Scalar;
        })(deltas);
        try {
          const metric = expectedTensor(fx, 'metric').data[0]!;
          expect(Math.abs(value.dataSync()[0]! - metric), 'metric').toBeLessThanOrEqual(ATOL);
          keys.forEach((k, i) => {
            const want = expectedTensor(fx, `grad.${k}`);
            expect(grads[i]!.shape, k).toEqual([...want.shape]);
            const d = maxAbsDiff(grads[i]!.dataSync(), want.data);
            const scale = Math.max(1e-12, ...Array.from(want.data, Math.abs));
            note('grads', Math.max(d, d / scale));
            expect(d, `grad.${k} max |Δ|`).toBeLessThanOrEqual(ATOL);
            expect(d / scale, `grad.${k} max |Δ| / max |g|`).toBeLessThanOrEqual(ATOL);
          });
        } finally {
          tf.dispose([value, ...grads, ...deltas, coef]);
        }
      });
    }
  });
}

function modelTests(spec: FamilyConformance, m: ConformanceModel, backend: TestBackend): void {
  describe(m.name, () => {
    let model: LanguageModel;
    let tokens: tf.Tensor2D;
    const B = spec.tokenIds.length;
    const T = spec.tokenIds[0]!.length;
    /** Distinct positions, the last one among them. */
    const readout = Array.from({ length: B }, (_, b) => (T - 1 + 3 * b) % T);

    beforeAll(async () => {
      await useBackend(backend);
      model = m.load();
      tokens = tf.tensor2d(spec.tokenIds, [B, T], 'int32');
    });
    afterAll(() => {
      model?.dispose();
      tokens?.dispose();
    });

    it('visits every declared site with its shape and calls each rule slot as declared', () => {
      const keys = declaredSiteKeys(model);
      const ctx = new RunContext({ cache: keys });
      const logits = model.forward({ tokens }, ctx);
      const cache = ctx.takeCache();
      try {
        expect(logits.shape).toEqual([B, T, model.dims.vocabSize]);
        ctx.assertAllVisited();
        for (const site of model.sites) {
          for (let l = 0; l < siteLayers(model.dims, site); l++) {
            const key = siteKey(site, l);
            expect(cache.get(key)?.shape, key).toEqual(siteShape(model.dims, site, B, T));
          }
        }
        expect(ctx.slotCalls).toEqual(allSlotCalls(spec, model.dims.nLayers));
      } finally {
        tf.dispose([logits, ...cache.values()]);
      }
    });

    it('refuses undeclared sites and layers out of range (UNKNOWN_SITE)', () => {
      const L = model.dims.nLayers;
      const unknown: SiteKey[] = [
        ...ALL_SITES.filter((s) => !model.sites.includes(s)).map((s) => siteKey(s, 0)),
        ...model.sites.map((s) => siteKey(s, siteLayers(model.dims, s))),
        siteKey(Site.ResidPre, L + 7),
      ];
      for (const key of unknown) {
        expectRelpError(
          () => model.forward({ tokens }, new RunContext({ cache: [key] })),
          ErrorCodes.UnknownSite,
          new RegExp(key.replace('.', '\\.')),
        );
      }
      const delta = tf.zeros([B, T, model.dims.dModel]);
      expectRelpError(
        () =>
          model.forward({ tokens }, new RunContext({ deltas: new Map([[siteKey(Site.MlpOut, L), delta]]) })),
        ErrorCodes.UnknownSite,
      );
      delta.dispose();
    });

    it('records per-head results without changing the logits', () => {
      const plain = model.forward({ tokens }, new RunContext());
      const ctx = new RunContext({ cache: [siteKey(Site.Result, 0), siteKey(Site.AttnOut, 0)] });
      const viaHeads = model.forward({ tokens }, ctx);
      const cache = ctx.takeCache();
      try {
        expectClose(viaHeads.dataSync(), plain.dataSync(), 1e-4, 'logits via per-head results');
        const { nHeads, dModel } = model.dims;
        expect(cache.get(siteKey(Site.Result, 0))?.shape).toEqual([B, T, nHeads, dModel]);
      } finally {
        tf.dispose([plain, viaHeads, ...cache.values()]);
      }
    });

    it('embed() is resid_pre.0, and a start at any block reproduces the full run bit for bit', () => {
      const L = model.dims.nLayers;
      const keys = [
        ...Array.from({ length: L }, (_, l) => siteKey(Site.ResidPre, l)),
        siteKey(Site.ResidPost, L - 1),
      ];
      const ctx = new RunContext({ cache: keys });
      const full = model.forward({ tokens }, ctx);
      const cache = ctx.takeCache();
      const owned: tf.Tensor[] = [full, ...cache.values()];
      try {
        const fullData = full.dataSync() as Float32Array;
        const emb = model.embed(tokens);
        owned.push(emb);
        expectBitIdentical(
          emb.dataSync() as Float32Array,
          cache.get(siteKey(Site.ResidPre, 0))!.dataSync() as Float32Array,
          'embed',
        );
        for (let l = 0; l <= L; l++) {
          const key = l < L ? siteKey(Site.ResidPre, l) : siteKey(Site.ResidPost, L - 1);
          // The start block's resid_pre is still a site of the run.
          const c2 = new RunContext({ cache: l < L ? [key] : [] });
          const part = model.forward({ resid: cache.get(key) as tf.Tensor3D, layer: l }, c2);
          owned.push(part, ...c2.takeCache().values());
          c2.assertAllVisited();
          expectBitIdentical(part.dataSync() as Float32Array, fullData, `start at block ${l}`);
        }
      } finally {
        tf.dispose(owned);
      }
    });

    it('readout and vocabulary logits equal the full logits there', () => {
      const V = model.dims.vocabSize;
      const full = model.forward({ tokens }, new RunContext());
      const ctx = new RunContext({ cache: [siteKey(Site.LnFinalScale, 0)] });
      const read = model.forward({ tokens }, ctx, { readout });
      const scales = ctx.takeCache();
      const ids = [V - 1, 0, 5 % V, 2 % V];
      const few = model.forward({ tokens }, new RunContext(), { readout, vocab: ids });
      try {
        expect(read.shape).toEqual([B, 1, V]);
        expect(scales.get(siteKey(Site.LnFinalScale, 0))?.shape).toEqual([B, 1, 1]);
        const f = full.dataSync();
        const r = read.dataSync();
        for (let b = 0; b < B; b++) {
          const at = (b * T + readout[b]!) * V;
          expectClose(r.subarray(b * V, b * V + V), f.subarray(at, at + V), 1e-5, `readout row ${b}`);
        }
        expect(few.shape).toEqual([B, 1, ids.length]);
        const want = Array.from({ length: B }, (_, b) => ids.map((id) => r[b * V + id]!)).flat();
        const scale = Math.max(1e-30, ...want.map(Math.abs));
        expect(maxAbsDiff(few.dataSync(), want) / scale, 'vocab logits').toBeLessThanOrEqual(1e-5);
      } finally {
        tf.dispose([full, read, few, ...scales.values()]);
      }
    });

    it('refuses bad tokens and bad inputs with typed errors, leaking nothing', () => {
      const { vocabSize: V, dModel: d, nLayers: L, contextLength } = model.dims;
      const ctx = new RunContext();
      const run = (t: tf.Tensor2D) => () => {
        try {
          return model.forward({ tokens: t }, ctx);
        } finally {
          t.dispose();
        }
      };
      const id = (rows: number[][], dtype: 'int32' | 'float32' = 'int32') =>
        tf.tensor2d(rows, [rows.length, rows[0]!.length], dtype);
      expectRelpError(run(id([[0, V]])), ErrorCodes.BadTokens, /outside the vocabulary/);
      expectRelpError(run(id([[-1, 0]])), ErrorCodes.BadTokens, /-1/);
      expectRelpError(run(id([[0, 1]], 'float32')), ErrorCodes.BadTokens, /int32/);
      expectRelpError(
        run(tf.zeros([1, contextLength + 1], 'int32') as tf.Tensor2D),
        ErrorCodes.BadTokens,
        /context length/,
      );
      const outside = id([[V + 3]]);
      expectRelpError(() => model.embed(outside), ErrorCodes.BadTokens);
      outside.dispose();
      const wide = tf.zeros([1, 2, d + 1]) as tf.Tensor3D;
      expectRelpError(() => model.forward({ resid: wide, layer: 0 }, ctx), ErrorCodes.BadInput, /resid/);
      wide.dispose();
      const resid = tf.zeros([1, 2, d]) as tf.Tensor3D;
      expectRelpError(() => model.forward({ resid, layer: L + 1 }, ctx), ErrorCodes.BadInput, /layer/);
      resid.dispose();
      for (const bad of [readout.slice(1), [...readout.slice(1), T], [...readout.slice(1), -1]]) {
        expectRelpError(
          () => model.forward({ tokens }, ctx, { readout: bad }),
          ErrorCodes.BadInput,
          /readout/,
        );
      }
      for (const vocab of [[], [V], [0, -1]]) {
        expectRelpError(() => model.forward({ tokens }, ctx, { readout, vocab }), ErrorCodes.BadInput);
      }
    });

    it('stops between blocks when aborted, leaking nothing', () => {
      const ac = new AbortController();
      ac.abort();
      expectRelpError(
        () => model.forward({ tokens }, new RunContext({ signal: ac.signal })),
        ErrorCodes.Aborted,
      );
    });

    it('the rule presets cover every declared nonlinearity; with them the forward pass is bit-identical', () => {
      const plainLogits = model.forward({ tokens }, new RunContext());
      const plain = plainLogits.dataSync() as Float32Array;
      plainLogits.dispose();
      for (const rules of PRESETS) {
        const uncovered = m.uncoveredByPresets ?? [];
        const covered = model.nonlinearities.filter((n) => !uncovered.includes(n.kind));
        expect(() => checkRulesCover(rules, covered, model.architecture)).not.toThrow();
        for (const kind of uncovered) {
          const n = model.nonlinearities.filter((x) => x.kind === kind);
          expect(n.length, `${kind} is declared`).toBeGreaterThan(0);
          expectRelpError(
            () => checkRulesCover(rules, n, model.architecture),
            ErrorCodes.MissingRule,
            new RegExp(kind),
          );
        }
        const ctx = new RunContext({ rules });
        const logits = model.forward({ tokens }, ctx);
        expectBitIdentical(logits.dataSync() as Float32Array, plain, `${rules.name}, tape off`);
        logits.dispose();
        expect(ctx.slotCalls).toEqual(allSlotCalls(spec, model.dims.nLayers));
        for (const n of model.nonlinearities) expect(ctx.slotCalls[n.slot], n.slot).toBeGreaterThan(0);
        // Under a gradient tape the rules' custom gradients are live; their forward values must not change.
        let taped: Float32Array = new Float32Array();
        const zero = tf.zeros([B, T, model.dims.dModel]);
        const g = tf.grad((x: tf.Tensor) => {
          const deltas = new Map([[siteKey(Site.ResidPre, 0), x]]);
          const out = model.forward({ tokens }, new RunContext({ rules, deltas }));
          taped = out.dataSync() as Float32Array;
          return tf.sum(out);
        })(zero);
        tf.dispose([zero, g]);
        expectBitIdentical(taped, plain, `${rules.name}, taped`);
      }
    });

    it('a prefix run and a joined run equal the full run; malformed prefixes are refused', () => {
      for (const [start, offset] of spec.prefixRuns) {
        expectPrefixRunMatchesFullRun(model, spec.tokenIds, start, offset);
      }
      for (const [start, offset] of spec.joinedRuns) {
        expectJoinedRunMatchesFullRun(model, spec.tokenIds, start, offset);
      }
      expectBadPrefixRefused(model);
    });

    if (spec.patching) {
      const { sites, timeout } = spec.patching;
      it('fast activation patching equals the naive way', { timeout }, async () => {
        await expectFastPatchingEqualsNaive(model, sites);
      });
    }

    it('leaves no tensors behind over repeated runs and backward passes', () => {
      const L = model.dims.nLayers;
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        const ctx = new RunContext({ cache: [siteKey(Site.Result, L - 1), siteKey(Site.Pattern, 0)] });
        const logits = model.forward({ tokens }, ctx, i === 2 ? { readout } : {});
        ctx.dispose();
        logits.dispose();
        for (const [key, options] of [
          [siteKey(Site.AttnOut, L - 1), { readout }],
          [siteKey(Site.MlpOut, 0), {}],
        ] as const) {
          const d = tf.zeros([B, T, model.dims.dModel]);
          const g = tf.grad((x: tf.Tensor) =>
            tf.sum(model.forward({ tokens }, new RunContext({ deltas: new Map([[key, x]]) }), options)),
          )(d);
          tf.dispose([d, g]);
        }
      }
      expect(tf.memory().numTensors).toBe(before);
    });

    it('dispose frees every weight tensor, is idempotent, and a disposed model refuses to run', () => {
      const before = tf.memory().numTensors;
      const fresh = m.load();
      expect(tf.memory().numTensors).toBeGreaterThan(before);
      tf.dispose(fresh.forward({ tokens }, new RunContext()));
      fresh.dispose();
      fresh.dispose();
      expect(tf.memory().numTensors).toBe(before);
      expectRelpError(() => fresh.embed(tokens), ErrorCodes.BadInput, /disposed/);
      expectRelpError(() => fresh.forward({ tokens }, new RunContext()), ErrorCodes.BadInput, /disposed/);
    });
  });
}
