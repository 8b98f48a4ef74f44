import { badInput, type SiteKey } from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import { SparseAutoencoder } from '../sae.js';
import type { SaeTrainSpec } from './spec.js';

/** Everything needed to continue a run exactly where it stopped. */
export interface TrainerState {
  /** Model batches done. */
  readonly batches: number;
  readonly windowsUsed: number;
  readonly tokens: number;
  readonly elapsedS: number;
  readonly saes: readonly SaeTrainerState[];
}

export interface SaeTrainerState {
  readonly key: SiteKey;
  readonly spec: SaeTrainSpec;
  readonly inputScale: number;
  readonly step: number;
  /** wEnc, bEnc, wDec, bDec, then Adam's m and v for each, as float32. */
  readonly tensors: Readonly<Record<string, { shape: number[]; data: Float32Array }>>;
  /** Training token count at which each feature last fired (-1: never). */
  readonly lastFired: Float64Array;
}

/** The SAEs of a checkpoint as they stood then (new tensors the caller disposes). */
export function saesFromState(state: TrainerState): SparseAutoencoder[] {
  return state.saes.map((s) => {
    const t = (name: string) => {
      const x = s.tensors[name];
      if (!x) throw badInput(`checkpoint of ${s.key} lacks ${name}`);
      return tf.tensor(x.data, x.shape, 'float32');
    };
    return new SparseAutoencoder(
      {
        wEnc: t('wEnc') as tf.Tensor2D,
        bEnc: t('bEnc') as tf.Tensor1D,
        wDec: t('wDec') as tf.Tensor2D,
        bDec: t('bDec') as tf.Tensor1D,
      },
      {
        hookPoint: s.spec.hookPoint,
        activation: s.spec.arch.kind === 'topk' ? { kind: 'topk', k: s.spec.arch.k } : { kind: 'relu' },
        applyBDecToInput: true,
        inputScale: s.inputScale,
        provenance: { format: 'relp-train', steps: s.step, checkpoint: true },
      },
    );
  });
}
