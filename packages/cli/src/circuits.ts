// The circuit evaluation lives in @relp/core (packages/core/src/circuits). Until core's index re-exports it,
// it is imported from its folder here, in this one place.
export * from '../../core/src/circuits/index.js';
