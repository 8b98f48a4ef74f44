export { attributeEdges, DEFAULT_EDGE_MAX_BYTES } from './attribute.js';
export {
  type EapGraphJson,
  type EdgeAblationOptions,
  type EdgeCircuitCurve,
  type EdgeSet,
  edgeCircuitCurve,
  edgeGraphJson,
  edgeSetNodes,
  evaluateEdgeSets,
  greedyEdges,
  MIB_EDGE_FRACTIONS,
  pruneEdges,
  topEdges,
} from './circuits.js';
export { compareEdgeScores } from './compare.js';
export * from './graph.js';
export {
  edgeDownstreamKeys,
  edgeUpstreamKeys,
  scoreMatrix,
  stackDownstream,
  stackUpstream,
} from './matrix.js';
export * from './types.js';
