import { badInput, type LanguageModel, type SiteKey, seededNormal, siteKey } from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import { checkSaeFitsModel } from '../formats/common.js';
import { SparseAutoencoder } from '../sae.js';
import { type AdamHyperparameters, type AdamSlot, adamSlot, adamStep } from './adam.js';
import { EPS_NORM, geometricMedian, kthLargestConst, stopGradient, unitRows } from './ops.js';
import { l1Coefficient } from './schedule.js';
import type { SaeMetrics, SaeTrainSpec } from './spec.js';
import type { SaeTrainerState } from './state.js';

/** The mean of the last `size` rows pushed, per column. */
export class RunningMean {
  private readonly window: number[][] = [];
  constructor(private readonly size: number) {}
  push(v: number[]): void {
    this.window.push(v);
    if (this.window.length > this.size) this.window.shift();
  }
  mean(): number[] {
    const n = this.window.length;
    if (n === 0) return [];
    return this.window[0]!.map((_, i) => this.window.reduce((a, r) => a + r[i]!, 0) / n);
  }
}

/** One SAE under training: variables, Adam moments, feature statistics. */
export class SaeTrainer {
  readonly key: SiteKey;
  readonly sae: SparseAutoencoder;
  readonly slots: Record<'wEnc' | 'bEnc' | 'wDec' | 'bDec', AdamSlot>;
  step = 0;
  inputScale = 1;
  lastFired: Float64Array;
  readonly recent: RunningMean;

  constructor(
    readonly spec: SaeTrainSpec,
    init: { wEnc: tf.Tensor; bEnc: tf.Tensor; wDec: tf.Tensor; bDec: tf.Tensor },
    recentWindow: number,
  ) {
    this.key = siteKey(spec.hookPoint.site, spec.hookPoint.layer);
    this.slots = {
      wEnc: adamSlot(init.wEnc),
      bEnc: adamSlot(init.bEnc),
      wDec: adamSlot(init.wDec),
      bDec: adamSlot(init.bDec),
    };
    tf.dispose([init.wEnc, init.bEnc, init.wDec, init.bDec]);
    const act =
      spec.arch.kind === 'topk' ? { kind: 'topk' as const, k: spec.arch.k } : { kind: 'relu' as const };
    // The training SAE reads inputs already scaled (inputScale 1); the scale is attached when it is handed out.
    this.sae = new SparseAutoencoder(
      {
        wEnc: this.slots.wEnc.param as unknown as tf.Tensor2D,
        bEnc: this.slots.bEnc.param as unknown as tf.Tensor1D,
        wDec: this.slots.wDec.param as unknown as tf.Tensor2D,
        bDec: this.slots.bDec.param as unknown as tf.Tensor1D,
      },
      { hookPoint: spec.hookPoint, activation: act, applyBDecToInput: true },
    );
    this.lastFired = new Float64Array(spec.dSae).fill(-1);
    this.recent = new RunningMean(recentWindow);
  }

  /**
   * From the first batch of activations x [n, dIn]: the input scale that gives the rows mean norm √dIn (when
   * `normalize` is on), and b_dec from the scaled rows. Call inside a tidy.
   */
  fitInputs(x: tf.Tensor2D, normalize: boolean, bDecInit: 'geometric_median' | 'mean' | 'zeros'): void {
    const dIn = x.shape[1];
    const meanNorm = tf.mean(tf.norm(x, 2, 1)).dataSync()[0]!;
    this.inputScale = normalize && meanNorm > 0 ? Math.sqrt(dIn) / meanNorm : 1;
    const xs = tf.mul(x, this.inputScale) as tf.Tensor2D;
    const b =
      bDecInit === 'zeros' ? tf.zeros([dIn]) : bDecInit === 'mean' ? tf.mean(xs, 0) : geometricMedian(xs);
    this.slots.bDec.param.assign(b as tf.Tensor1D);
  }

  /**
   * The features AuxK reconstructs with at training token `at` (1: not fired in the last deadWindow tokens), or
   * undefined when none is dead or the architecture has no AuxK loss.
   */
  deadMask(at: number, deadWindow: number): tf.Tensor1D | undefined {
    const arch = this.spec.arch;
    if (arch.kind !== 'topk' || !((arch.auxCoefficient ?? 1 / 32) > 0)) return undefined;
    const mask = new Float32Array(this.spec.dSae);
    let any = false;
    for (let f = 0; f < mask.length; f++) {
      const last = this.lastFired[f]!;
      if (at - Math.max(last, 0) >= deadWindow) {
        mask[f] = 1;
        any = true;
      }
    }
    return any ? tf.tensor1d(mask) : undefined;
  }

  /** Marks the features with a non-zero firing count as fired at training token `at`. */
  recordFiring(fired: ArrayLike<number>, at: number): void {
    for (let f = 0; f < fired.length; f++) if (fired[f]! > 0) this.lastFired[f] = at;
  }

  /** The training metrics after `tokens` training tokens (no held-out part). */
  metrics(dIn: number, tokens: number, deadWindow: number): SaeMetrics {
    const [mse, ev, l0] = this.recent.mean();
    let dead = 0;
    for (const last of this.lastFired) if (last < 0 || tokens - last >= deadWindow) dead++;
    return {
      site: this.key,
      arch: this.spec.arch,
      dIn,
      dSae: this.spec.dSae,
      tokens,
      steps: this.step,
      inputScale: this.inputScale,
      train: { mse: mse ?? Number.NaN, explainedVariance: ev ?? Number.NaN, l0: l0 ?? Number.NaN },
      deadFeatures: dead,
      deadWindowTokens: Math.min(deadWindow, tokens),
    };
  }

  /** One Adam step on scaled inputs x [n, dIn]; returns [sum sq error, feature counts, firing counts] tensors. */
  trainStep(
    x: tf.Tensor2D,
    o: AdamHyperparameters & { readonly dead: tf.Tensor1D | undefined },
  ): { sqErr: tf.Scalar; l0: tf.Scalar; fired: tf.Tensor1D } {
    return tf.tidy(() => {
      const arch = this.spec.arch;
      const n = x.shape[0];
      const vars = [
        this.slots.wEnc.param,
        this.slots.bEnc.param,
        this.slots.wDec.param,
        this.slots.bDec.param,
      ];
      let fKept: tf.Tensor | undefined;
      let errKept: tf.Tensor | undefined;
      const { grads } = tf.variableGrads(() => {
        const pre = this.sae.preActivations(x);
        const f = this.sae.activate(pre);
        const xhat = this.sae.decode(f);
        const err = tf.sub(xhat, x);
        const mse = tf.div(tf.sum(tf.square(err)), n);
        fKept = tf.keep(tf.clone(f));
        errKept = tf.keep(tf.sum(tf.square(err)));
        let loss: tf.Tensor = mse;
        if (arch.kind === 'relu') {
          const lambda = l1Coefficient(arch, this.step);
          const decNorm = tf.norm(this.slots.wDec.param, 2, 1);
          loss = tf.add(loss, tf.mul(lambda, tf.div(tf.sum(tf.mul(f, decNorm)), n)));
        } else if (o.dead !== undefined) {
          // AuxK: the residual error, as a constant, reconstructed by the auxK largest dead features.
          const auxK = Math.min(arch.auxK ?? Math.floor(x.shape[1] / 2), this.spec.dSae);
          const coef = arch.auxCoefficient ?? 1 / 32;
          const preDead = tf.where(
            tf.broadcastTo(tf.cast(o.dead, 'bool'), pre.shape),
            pre,
            tf.fill(pre.shape, -1e30),
          );
          const kth = kthLargestConst(preDead, auxK);
          const fAux = tf.where(tf.greaterEqual(preDead, kth), tf.relu(preDead), tf.zerosLike(preDead));
          const eHat = tf.matMul(fAux, this.slots.wDec.param);
          // Normalised by the residual's variance, as OpenAI's and dictionary_learning's AuxK are.
          const e = stopGradient(err);
          const eVar = tf.sum(tf.square(tf.sub(e, tf.mean(e, 0, true))));
          const aux = tf.div(tf.sum(tf.square(tf.sub(eHat, e))), tf.maximum(eVar, EPS_NORM));
          loss = tf.add(loss, tf.mul(coef, aux));
        }
        return loss as tf.Scalar;
      }, vars);
      // The decoder's rows stay unit norm: drop the gradient's component along each row, step, renormalise.
      const wDec = this.slots.wDec.param;
      const gDec = grads[wDec.name]!;
      grads[wDec.name] = tf.sub(gDec, tf.mul(tf.sum(tf.mul(gDec, wDec), 1, true), wDec));
      this.step++;
      adamStep(Object.values(this.slots), grads, this.step, o);
      wDec.assign(unitRows(wDec as unknown as tf.Tensor2D));
      const f = fKept!;
      const firing = tf.greater(f, 0);
      const out = {
        sqErr: errKept as tf.Scalar,
        l0: tf.sum(tf.cast(firing, 'float32')) as tf.Scalar,
        fired: tf.sum(tf.cast(firing, 'float32'), 0) as tf.Tensor1D,
      };
      tf.dispose(f);
      return out;
    });
  }

  /** The trained SAE with its input scale, as a new object over copies of the weights. */
  export(): SparseAutoencoder {
    const p = this.slots;
    return new SparseAutoencoder(
      {
        wEnc: tf.clone(p.wEnc.param) as tf.Tensor2D,
        bEnc: tf.clone(p.bEnc.param) as tf.Tensor1D,
        wDec: tf.clone(p.wDec.param) as tf.Tensor2D,
        bDec: tf.clone(p.bDec.param) as tf.Tensor1D,
      },
      {
        hookPoint: this.spec.hookPoint,
        activation: this.sae.activation,
        applyBDecToInput: true,
        inputScale: this.inputScale,
        provenance: { format: 'relp-train', steps: this.step },
      },
    );
  }

  async state(): Promise<SaeTrainerState> {
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [name, s] of Object.entries(this.slots)) {
      tensors[name] = { shape: s.param.shape, data: (await s.param.data()) as Float32Array };
      tensors[`${name}.m`] = { shape: s.m.shape, data: (await s.m.data()) as Float32Array };
      tensors[`${name}.v`] = { shape: s.v.shape, data: (await s.v.data()) as Float32Array };
    }
    return {
      key: this.key,
      spec: this.spec,
      inputScale: this.inputScale,
      step: this.step,
      tensors,
      lastFired: Float64Array.from(this.lastFired),
    };
  }

  restore(st: SaeTrainerState): void {
    for (const [name, s] of Object.entries(this.slots)) {
      for (const [suffix, v] of [
        ['', s.param],
        ['.m', s.m],
        ['.v', s.v],
      ] as const) {
        const t = st.tensors[`${name}${suffix}`];
        if (!t || t.data.length !== v.size)
          throw badInput(`checkpoint of ${this.key} lacks ${name}${suffix}`);
        tf.tidy(() => v.assign(tf.tensor(t.data, v.shape, 'float32')));
      }
    }
    this.step = st.step;
    this.inputScale = st.inputScale;
    this.lastFired = Float64Array.from(st.lastFired);
  }

  dispose(): void {
    for (const s of Object.values(this.slots)) tf.dispose([s.param, s.m, s.v]);
  }
}

/**
 * The trainer of SAE number `index` of a run seeded `seed`, after checking that the SAE fits the model: decoder
 * rows drawn N(0, 1) and scaled to unit norm, the encoder their transpose, both biases zero.
 */
export function seededTrainer(
  model: LanguageModel,
  spec: SaeTrainSpec,
  index: number,
  seed: number,
  recentWindow: number,
): SaeTrainer {
  const dIn = model.dims.dModel;
  const probe = new SparseAutoencoder(
    {
      wEnc: tf.zeros([dIn, spec.dSae]),
      bEnc: tf.zeros([spec.dSae]),
      wDec: tf.zeros([spec.dSae, dIn]),
      bDec: tf.zeros([dIn]),
    },
    { hookPoint: spec.hookPoint, activation: { kind: 'relu' } },
  );
  try {
    checkSaeFitsModel(probe, model);
  } finally {
    probe.dispose();
  }
  const normal = seededNormal((seed * 1009 + index * 7919 + 1) >>> 0);
  const w = new Float32Array(spec.dSae * dIn);
  for (let j = 0; j < w.length; j++) w[j] = normal();
  const wDec = tf.tidy(() => unitRows(tf.tensor2d(w, [spec.dSae, dIn])));
  const wEnc = tf.transpose(wDec);
  return new SaeTrainer(
    spec,
    { wEnc, bEnc: tf.zeros([spec.dSae]), wDec, bDec: tf.zeros([dIn]) },
    recentWindow,
  );
}
