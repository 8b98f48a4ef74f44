import * as tf from '@tensorflow/tfjs-core';
import { ErrorCodes, RelpError } from './errors.js';

/** Disposes every tensor in a map, array or record (nested one level), ignoring non-tensors. */
export function disposeAll(
  ...items: (tf.Tensor | undefined | null | Iterable<tf.Tensor> | ReadonlyMap<unknown, tf.Tensor>)[]
): void {
  for (const item of items) {
    if (item == null) continue;
    if (item instanceof tf.Tensor) item.dispose();
    else if (item instanceof Map) for (const t of item.values()) t.dispose();
    else for (const t of item as Iterable<tf.Tensor>) t.dispose();
  }
}

/**
 * Runs fn and throws if it leaves more live tensors than it returns. Used by every test file and available
 * to library users who want the same guarantee around their own code.
 */
export async function withLeakGuard<T>(fn: () => Promise<T> | T, allowed = 0): Promise<T> {
  const before = tf.memory().numTensors;
  const out = await fn();
  const after = tf.memory().numTensors;
  if (after - before > allowed) {
    throw new RelpError(ErrorCodes.Internal, `tensor leak: ${after - before} tensors outlived the call`, {
      details: { before, after },
    });
  }
  return out;
}

/** Largest tf.memory().numBytes seen at the sample points (every site of a run, and method boundaries). */
export class PeakBytes {
  private peak = 0;
  sample(): void {
    const b = tf.memory().numBytes;
    if (b > this.peak) this.peak = b;
  }
  get value(): number {
    this.sample();
    return this.peak;
  }
}

/**
 * tf.valueAndGrads(f)(xs), but when `f` or the backward pass throws (an aborted run, a failing metric, a bad
 * patch, a rule's gradient), nothing is left behind: tfjs `keep`s the tensors it saves for the backward pass and
 * frees them only when a backward pass completes (tfjs-core 4.22, engine.gradients), and when the backward pass
 * throws the forward value f(xs) is lost too. Reads the engine's tape, which tfjs does not expose in its types.
 */
export function valueAndGradsFreeingOnThrow<R extends tf.Tensor>(
  f: (...xs: tf.Tensor[]) => R,
  xs: tf.Tensor[],
): { value: R; grads: tf.Tensor[] } {
  try {
    return tf.valueAndGrads(f)(xs) as { value: R; grads: tf.Tensor[] };
  } catch (e) {
    const state = (
      tf.engine() as unknown as { state: { gradientDepth: number; activeTape: TapeNode[] | null } }
    ).state;
    // Only an outermost gradient owns the tape; a nested one's tape belongs to the enclosing run.
    if (state.gradientDepth === 0 && Array.isArray(state.activeTape)) {
      const inputs = new Set(xs);
      for (const node of state.activeTape) {
        for (const t of node.saved ?? []) if (!t.isDisposed) t.dispose();
        // The forward pass's tidy freed every output it did not return or keep; what is still live and not
        // kept (a site cache the caller owns is kept) is f's value, orphaned by a throwing backward pass.
        for (const t of node.outputs ?? []) if (!t.isDisposed && !t.kept && !inputs.has(t)) t.dispose();
      }
      state.activeTape = null;
    }
    throw e;
  }
}

interface TapeNode {
  readonly saved?: tf.Tensor[];
  readonly outputs?: tf.Tensor[];
}
