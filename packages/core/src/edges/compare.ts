import { ErrorCodes, RelpError } from '../errors.js';
import { type Agreement, compareGrids } from '../evaluation.js';
import type { EdgeScores } from './types.js';

/**
 * The agreement statistics of docs/method.md §13 between an estimate's edge scores and a reference's (edge
 * patching, usually on a sample): over the reference's edges, in its order (per position, flattened edge-major,
 * when both are per position). BAD_INPUT when the estimate lacks one of the reference's edges, when the two use
 * different position modes, or another model's graph.
 */
export function compareEdgeScores(estimate: EdgeScores, reference: EdgeScores, k = 10): Agreement {
  if (estimate.positions !== reference.positions) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `cannot compare edge scores per ${estimate.positions === 'each' ? 'position' : 'edge'} with scores per ` +
        `${reference.positions === 'each' ? 'position' : 'edge'}`,
    );
  }
  if (estimate.graph.nEdges !== reference.graph.nEdges || estimate.seqLen !== reference.seqLen) {
    throw new RelpError(ErrorCodes.BadInput, 'the edge scores come from different models or batches');
  }
  const at = new Map(estimate.edges.map((e, i) => [e, i]));
  const est: number[][] = [];
  const ref: number[][] = [];
  reference.edges.forEach((e, i) => {
    const j = at.get(e);
    if (j === undefined) {
      throw new RelpError(ErrorCodes.BadInput, `the estimate has no score for edge ${e}`, {
        details: { edge: e },
      });
    }
    const row = (x: number | readonly number[]) => (typeof x === 'number' ? [x] : [...x]);
    est.push(row(estimate.scores[j]!));
    ref.push(row(reference.scores[i]!));
  });
  return compareGrids(est, ref, k);
}
