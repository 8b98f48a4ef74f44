export { attributeEdges, DEFAULT_EDGE_MAX_BYTES } from './attribute.js';
export * from './graph.js';
export { downstreamKeys, scoreMatrix, stackDownstream, stackUpstream, upstreamKeys } from './matrix.js';
export * from './types.js';
